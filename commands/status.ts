// One line that tells a member where their job stands; adapters edit it into the status message.
import type { JobEvent } from '../src/jobs/types.js';
import { formatDuration, formatEta } from './format.js';

function place(position: number, etaSeconds: number): string {
  return position <= 0 ? `next up · ${formatEta(etaSeconds)}` : `#${position} · ${formatEta(etaSeconds)}`;
}

export function statusText(event: JobEvent): string {
  switch (event.type) {
    case 'queued':
    case 'moved':
      return `Queued ${place(event.position, event.etaSeconds)}`;
    case 'resumed':
      return event.cause === 'engine-crash'
        ? `The picture engine crashed; trying again: ${place(event.position, event.etaSeconds)}`
        : `Back in the queue after a restart: ${place(event.position, event.etaSeconds)}`;
    case 'started':
      return 'Drawing…';
    case 'progress':
      return `Drawing… step ${event.step}/${event.total}`;
    case 'done': {
      const ms = event.job.result?.durationMs;
      return ms === undefined ? 'Done' : `Done in ${formatDuration(ms)}`;
    }
    case 'failed':
      return `Failed: ${event.reason}`;
    case 'cancelled':
      return `Cancelled by ${event.by}`;
  }
}
