// /queue: what is drawing, who waits, and where the member stands.
//
// Privacy: another member's prompt and name are shown only when their job was posted in the
// same place (same platform and chat/channel) as where /queue is asked: everyone there has seen
// the request already. A job from a private chat with the bot is in no one else's place, so its
// prompt never shows to anyone but its owner. Elsewhere a job is "a member's picture". Admins
// also see every job's id, so they can /cancel it, but prompts follow the same rule for them,
// since a /queue answer can be read by others in a group.
import { workerLoaded } from '../src/jobs/model-preference.js';
import type { Job, WorkerStatus } from '../src/jobs/types.js';
import { formatEta, shorten } from './format.js';
import { isAdmin, isOwner } from './permissions.js';
import { progressText } from './status.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

const SHOWN = 10;
const PROMPT_CHARS = 60;

export async function queue(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { running, alsoRunning, waiting } = ctx.jobs.snapshot();
  const admin = isAdmin(ctx.config, req.requester);
  const engineWorkers = ctx.jobs.workers?.();
  const workers = admin ? workerLines(engineWorkers) : [];
  // Redis backend: a job whose model no live worker has waits for one, and says so.
  const noWorker = (j: Job) => (engineWorkers && !engineWorkers.some((w) => w.models.includes(j.spec.model)) ? ` · waiting for a worker that has model ${j.spec.model}` : '');
  if (!running && waiting.length === 0 && workers.length === 0) {
    return { ok: true, visibility: 'private', text: 'The queue is empty: your next /imagine starts right away.' };
  }
  const mine = (j: Job) => isOwner(j, req.requester);
  const samePlace = (j: Job) => j.target.platform === req.target.platform && j.target.chatId === req.target.chatId;
  /** `“prompt” · Name` where the asker may see it, else a neutral stand-in; plus the id for admins. */
  const describe = (j: Job, joiner: string) => {
    const what = mine(j) || samePlace(j) ? `“${shorten(j.spec.prompt, PROMPT_CHARS)}”${joiner}${j.requester.name}` : 'a member’s picture';
    return admin ? `${what} (job ${j.id})` : what;
  };
  const lines: string[] = [];
  for (const { job, step, total, pictures } of [...(running ? [running] : []), ...(alsoRunning ?? [])]) {
    const progress = step > 0 ? progressText(step, total, pictures) : 'starting';
    lines.push(`Drawing: ${describe(job, ' for ')} · ${progress}${mine(job) ? ' ← yours' : ''}`);
  }
  if (waiting.length) {
    lines.push(`Waiting (${waiting.length}):`);
    for (const w of waiting.slice(0, SHOWN)) {
      lines.push(`#${w.position} ${describe(w.job, ' · ')} · ${formatEta(w.etaSeconds, w.approximate)}${noWorker(w.job)}${mine(w.job) ? ' ← yours' : ''}`);
    }
    if (waiting.length > SHOWN) lines.push(`…and ${waiting.length - SHOWN} more.`);
  }
  const own = waiting.filter((w) => mine(w.job));
  const next = own[0];
  if (next) {
    lines.push(`You have ${own.length} waiting; the next is #${next.position} (${formatEta(next.etaSeconds, next.approximate)}).`);
  } else if (!(running && mine(running.job))) {
    lines.push('You have nothing in the queue.');
  }
  lines.push(...workers);
  return { ok: true, visibility: 'private', text: lines.join('\n') };
}

/**
 * Admins only: the engine workers (Redis backend) — models, the loaded ones, speed, current job.
 * Job ids only, never prompts: the list is about machines, and admins can /cancel by id.
 */
function workerLines(workers: WorkerStatus[] | undefined): string[] {
  if (!workers) return [];
  if (workers.length === 0) return ['Engine workers: none connected — jobs wait until one starts (npm run worker).'];
  const lines = [`Engine workers (${workers.length}):`];
  for (const w of workers) {
    const speed = w.imagesPerMinute !== undefined ? `${w.imagesPerMinute.toFixed(1)} pictures/min` : 'no job yet';
    const doing = w.current ? `drawing job ${w.current.jobId} (step ${w.current.step}/${w.current.total})` : 'idle';
    const models = w.models.length > 0 ? w.models.join(', ') : 'none found';
    const loaded = workerLoaded(w);
    lines.push(`• ${w.id} · ${doing} · ${speed} · ${w.done} done · models: ${models}${loaded.length > 0 ? ` · loaded: ${loaded.join(', ')}` : ''}`);
  }
  return lines;
}
