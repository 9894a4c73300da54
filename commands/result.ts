// How a finished job is shown: a short caption, the details that did not fit, and buttons.
import type { Config } from '../src/config/schema.js';
import type { Job } from '../src/jobs/types.js';
import { formatDuration, shorten } from './format.js';
import type { ButtonSpec, ResultView } from './types.js';

const CAPTION_PROMPT_CHARS = 200;

function seedsLine(job: Job): string {
  const { spec } = job;
  const images = job.result?.images ?? [];
  const count = images.length || spec.count;
  if (spec.variation) {
    const first = spec.variation.seed;
    const seeds = count > 1 ? `${first}–${(first + count - 1) >>> 0}` : `${first}`;
    return `Seed ${spec.seed} · variation seed${count > 1 ? 's' : ''} ${seeds} at ${spec.variation.strength}`;
  }
  const seeds = images.length ? images.map((i) => i.seed) : [spec.seed];
  return `Seed${seeds.length > 1 ? 's' : ''} ${seeds.join(' · ')}`;
}

function captionOf(job: Job): string {
  const lines = [`“${shorten(job.spec.prompt, CAPTION_PROMPT_CHARS)}”`];
  if (job.kind === 'upscale' && job.spec.init) {
    lines.push(`2× upscale of picture ${job.spec.init.index + 1} of job ${job.spec.init.jobId} · ${job.spec.width}x${job.spec.height}`);
  }
  const facts = [seedsLine(job), job.result?.model ?? job.spec.model];
  if (job.result) facts.push(formatDuration(job.result.durationMs));
  lines.push(facts.join(' · '));
  return lines.join('\n');
}

function detailsOf(job: Job): string[] {
  const details = [...job.notes];
  const t = job.result?.truncation;
  // tokenLimit is absent in results stored before long prompts were read in chunks (75 then).
  if (t?.prompt?.dropped) {
    details.push(`The model reads ${t.prompt.tokenLimit ?? 75} tokens; these words of the prompt were left out: ${t.prompt.dropped}`);
  }
  if (t?.negativePrompt?.dropped) {
    details.push(`These words of the negative prompt were left out (${t.negativePrompt.tokenLimit ?? 75}-token limit): ${t.negativePrompt.dropped}`);
  }
  return details;
}

function buttonsOf(job: Job): ButtonSpec[][] {
  const count = job.result?.images.length ?? 0;
  const rows: ButtonSpec[][] = [];
  // An upscale is img2img of one picture: more upscales or txt2img variations of it make no sense.
  if (count > 0 && job.kind !== 'upscale') {
    const per = (action: 'upscale' | 'vary', letter: string): ButtonSpec[] =>
      Array.from({ length: count }, (_, index) => ({
        action: { action, jobId: job.id, index },
        label: `${letter}${index + 1}`,
        style: 'secondary',
      }));
    rows.push(per('upscale', 'U'), per('vary', 'V'));
  }
  rows.push([
    { action: { action: 'reroll', jobId: job.id }, label: '🔁', style: 'primary' },
    { action: { action: 'info', jobId: job.id }, label: 'ℹ️', style: 'secondary' },
    { action: { action: 'delete', jobId: job.id }, label: '🗑', style: 'danger' },
  ]);
  return rows;
}

export function resultView(job: Job, _config: Config): ResultView {
  return { caption: captionOf(job), details: detailsOf(job), buttons: buttonsOf(job) };
}
