// One line that tells a member where their job stands; adapters edit it into the status message.
import type { JobEvent, PictureRange } from '../src/jobs/types.js';
import { formatDuration, formatEta } from './format.js';

function place(position: number, etaSeconds: number, approximate = false): string {
  const eta = formatEta(etaSeconds, approximate);
  return position <= 0 ? `next up · ${eta}` : `#${position} · ${eta}`;
}

/** "step 37/150", and "· picture 2 of 4" when pictures are drawn one batch after another. */
export function progressText(step: number, total: number, pictures?: PictureRange): string {
  const where = pictures
    ? pictures.first === pictures.last
      ? ` · picture ${pictures.first} of ${pictures.count}`
      : ` · pictures ${pictures.first}–${pictures.last} of ${pictures.count}`
    : '';
  return `step ${step}/${total}${where}`;
}

/** "Preparing model X (first use only)… 42%", "Loading model X…". */
export function stageText(stage: 'preparing' | 'loading', model: string, loras?: readonly string[], fraction?: number): string {
  if (stage === 'loading') return `Loading model ${model}…`;
  const what = loras && loras.length > 0 ? `model ${model} with LoRA ${loras.join(', ')}` : `model ${model}`;
  return `Preparing ${what} (first use only)…${fraction === undefined ? '' : ` ${Math.round(fraction * 100)}%`}`;
}

export function statusText(event: JobEvent): string {
  switch (event.type) {
    case 'queued':
    case 'moved':
      return `Queued ${place(event.position, event.etaSeconds, event.approximate)}`;
    case 'resumed':
      if (event.cause === 'shutdown') return 'The bot is restarting: this picture will be drawn when it is back.';
      return event.cause === 'engine-crash'
        ? `The picture engine crashed; trying again: ${place(event.position, event.etaSeconds, event.approximate)}`
        : `Back in the queue after a restart: ${place(event.position, event.etaSeconds, event.approximate)}`;
    case 'started':
      return 'Drawing…';
    case 'stage':
      return stageText(event.stage, event.model, event.loras, event.fraction);
    case 'progress':
      return `Drawing… ${progressText(event.step, event.total, event.pictures)}`;
    case 'done': {
      const ms = event.job.result?.durationMs;
      return ms === undefined ? 'Done' : `Done in ${formatDuration(ms)}`;
    }
    case 'failed':
      return `Failed: ${event.reason}`;
    case 'cancelled':
      return `Cancelled by ${event.by}`;
    case 'undeliverable':
      return `Drawn, but it could not be delivered here (${event.reason}).`;
  }
}
