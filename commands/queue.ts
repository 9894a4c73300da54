// /queue: what is drawing, who waits, and where the member stands.
import { formatEta, shorten } from './format.js';
import { isOwner } from './permissions.js';
import { progressText } from './status.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

const SHOWN = 10;
const PROMPT_CHARS = 60;

export async function queue(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { running, waiting } = ctx.jobs.snapshot();
  if (!running && waiting.length === 0) {
    return { ok: true, visibility: 'private', text: 'The queue is empty: your next /imagine starts right away.' };
  }
  const mine = (j: Parameters<typeof isOwner>[0]) => isOwner(j, req.requester);
  const lines: string[] = [];
  if (running) {
    const { job, step, total, pictures } = running;
    const progress = step > 0 ? progressText(step, total, pictures) : 'starting';
    lines.push(`Drawing: “${shorten(job.spec.prompt, PROMPT_CHARS)}” for ${job.requester.name} · ${progress}${mine(job) ? ' ← yours' : ''}`);
  }
  if (waiting.length) {
    lines.push(`Waiting (${waiting.length}):`);
    for (const w of waiting.slice(0, SHOWN)) {
      lines.push(
        `#${w.position} “${shorten(w.job.spec.prompt, PROMPT_CHARS)}” · ${w.job.requester.name} · ${formatEta(w.etaSeconds)}${mine(w.job) ? ' ← yours' : ''}`,
      );
    }
    if (waiting.length > SHOWN) lines.push(`…and ${waiting.length - SHOWN} more.`);
  }
  const own = waiting.filter((w) => mine(w.job));
  const next = own[0];
  if (next) {
    lines.push(`You have ${own.length} waiting; the next is #${next.position} (${formatEta(next.etaSeconds)}).`);
  } else if (!(running && mine(running.job))) {
    lines.push('You have nothing in the queue.');
  }
  return { ok: true, visibility: 'private', text: lines.join('\n') };
}
