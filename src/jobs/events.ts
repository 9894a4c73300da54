// The job service's events: a listener that throws is logged and never stops the others.
import type { Logger } from 'pino';
import type { JobEvent, JobEventListener } from './types.js';

export class JobEvents {
  private readonly listeners = new Set<JobEventListener>();

  constructor(private readonly log: Logger) {}

  on(listener: JobEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event: JobEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch (err) {
        this.log.error({ err, jobId: event.job.id, event: event.type }, 'job event listener threw');
      }
    }
  }
}
