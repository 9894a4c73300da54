// How live jobs are shared with events and answers without letting a consumer change them.
import type { Job, Requester } from './types.js';

export function memberKeyOf(r: Pick<Requester, 'platform' | 'userId'>): string {
  return `${r.platform}:${r.userId}`;
}

export function clone<T>(value: T): T {
  return structuredClone(value);
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/**
 * Freezes the parts of a job that never change after submit (what to draw, who asked, where to
 * answer, notes). Events and answers can then carry a cheap shallow copy — a queue move with
 * thousands of waiting jobs emits thousands of events — and a consumer that tries to edit, say,
 * `event.job.spec` gets a TypeError instead of silently changing a queued job.
 */
export function freezeParts(job: Job): Job {
  deepFreeze(job.spec);
  deepFreeze(job.requester);
  deepFreeze(job.target);
  deepFreeze(job.notes);
  if (job.result) deepFreeze(job.result);
  if (job.delivery) deepFreeze(job.delivery);
  return job;
}

/** A snapshot of a live job for events and answers: top-level fields copied, the rest frozen. */
export function view(job: Job): Job {
  return { ...job };
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export function delay(ms: number): Promise<'timeout'> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), ms);
    t.unref?.();
  });
}
