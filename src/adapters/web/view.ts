// A job as the page draws it: status, where it stands, picture URLs (by job id and index,
// never by path) and the same buttons as the chat platforms, as codec payloads.
import { encodeAction } from '../../../commands/codec.js';
import { pictureFileName } from '../../../commands/format.js';
import { resultView, statusText } from '../../../commands/index.js';
import type { Action, ButtonSpec } from '../../../commands/types.js';
import type { Config } from '../../config/schema.js';
import type { Job, JobEvent, JobService } from '../../jobs/types.js';

export interface ButtonView {
  /** The chat label (U1, 🔁 …), with a word after an emoji so it reads without emoji fonts too. */
  label: string;
  /** What a screen reader says: "U1" alone means nothing out loud. */
  title: string;
  payload: string;
  /** Which action (the page opens a dialog for `info`'s long answer). */
  action: Action['action'];
  style: ButtonSpec['style'];
}

export interface JobView {
  id: string;
  kind: Job['kind'];
  status: Job['status'];
  statusText: string;
  prompt: string;
  owner: string;
  caption?: string;
  details: string[];
  position?: number;
  etaSeconds?: number;
  width: number;
  height: number;
  count: number;
  grid?: string;
  images: { url: string; download: string; seed: number; width: number; height: number }[];
  buttons: ButtonView[][];
  error?: string;
}

function titleOf(a: Action): string {
  const n = a.index === undefined ? '' : ` picture ${a.index + 1}`;
  switch (a.action) {
    case 'upscale':
      return `Upscale${n} (2×)`;
    case 'vary':
      return `Variations of${n}`;
    case 'vary-strong':
      return `Strong variations of${n}`;
    case 'reroll':
      return 'Reroll: the same request with new seeds';
    case 'info':
      return `Parameters and info text${n}`;
    case 'cancel':
      return 'Cancel this job';
    case 'delete':
      return 'Delete this result';
  }
}

const WORDS: Partial<Record<Action['action'], string>> = { reroll: 'Reroll', info: 'Info', delete: 'Delete' };

function button(b: ButtonSpec): ButtonView {
  const word = /^[\x20-\x7e]+$/.test(b.label) ? undefined : WORDS[b.action.action];
  return {
    label: word ? `${b.label} ${word}` : b.label,
    title: titleOf(b.action),
    payload: encodeAction(b.action),
    action: b.action.action,
    style: b.style,
  };
}

export function imageUrl(jobId: string, which: number | 'grid', download = false): string {
  return `/img/${jobId}/${which}${download ? '?download=1' : ''}`;
}

/** What the status line says when no event is at hand (a page loading a job it knew). */
function standing(job: Job, jobs: JobService): { text: string; position?: number; etaSeconds?: number } {
  switch (job.status) {
    case 'queued':
    case 'running': {
      const at = jobs.position(job.id);
      if (!at) return { text: job.status === 'running' ? 'Drawing…' : 'Queued' };
      if (at.position === 0 && job.status === 'running') return { text: 'Drawing…', position: 0, etaSeconds: at.etaSeconds };
      return { text: statusText({ type: 'moved', job, ...at }), position: at.position, etaSeconds: at.etaSeconds };
    }
    case 'done':
    case 'delivered':
      return { text: statusText({ type: 'done', job }) };
    case 'failed':
      return { text: statusText({ type: 'failed', job, reason: job.error ?? 'unknown reason' }) };
    case 'cancelled':
      return { text: statusText({ type: 'cancelled', job, by: job.cancelledBy ?? 'someone' }) };
  }
}

export function jobView(job: Job, config: Config, jobs: JobService, event?: JobEvent): JobView {
  const where = standing(job, jobs);
  const text = event ? statusText(event) : where.text;
  const position = event && 'position' in event ? event.position : where.position;
  const etaSeconds = event && 'etaSeconds' in event ? event.etaSeconds : where.etaSeconds;
  const finished = job.status === 'done' || job.status === 'delivered';
  const view = finished ? resultView(job, config) : undefined;
  const buttons: ButtonView[][] = view
    ? view.buttons.map((row) => row.map(button))
    : job.status === 'queued' || job.status === 'running'
      ? [[button({ action: { action: 'cancel', jobId: job.id }, label: 'Cancel', style: 'danger' })]]
      : [];
  const images = (job.result?.images ?? []).map((image, i) => ({
    url: imageUrl(job.id, i),
    download: imageUrl(job.id, i, true),
    seed: image.seed,
    width: image.width,
    height: image.height,
  }));
  return {
    id: job.id,
    kind: job.kind,
    status: job.status,
    statusText: text,
    prompt: job.spec.prompt,
    owner: job.requester.name,
    ...(view ? { caption: view.caption } : {}),
    details: view ? view.details : [...job.notes],
    ...(position !== undefined ? { position } : {}),
    ...(etaSeconds !== undefined ? { etaSeconds } : {}),
    width: job.spec.width,
    height: job.spec.height,
    count: job.spec.count,
    ...(job.result?.grid ? { grid: imageUrl(job.id, 'grid') } : {}),
    images,
    buttons,
    ...(job.error ? { error: job.error } : {}),
  };
}

/** The download name of a picture: readable, and the same rule the chat platforms use. */
export function downloadName(job: Job, which: number | 'grid'): string {
  if (which === 'grid') return pictureFileName(job.spec.prompt, job.spec.seed).replace(/\.png$/, '-grid.png');
  return pictureFileName(job.spec.prompt, job.result?.images[which]?.seed ?? job.spec.seed);
}
