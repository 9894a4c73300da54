/**
 * Model routing between engine workers (Redis backend): which waiting job starts next, on which
 * worker. Pure; the dispatcher feeds it the heartbeats and the jobs it has handed over.
 *
 * - A job goes only to a worker that has its model. A job no free worker can run is skipped for
 *   one behind it that can (it keeps its place and starts as soon as such a worker is free).
 * - Among the first PREFER_WITHIN jobs in fair order, a job whose model a free worker has loaded
 *   (every model in that worker's LRU counts, and a job with LoRAs needs its very LoRA variant:
 *   model-preference.ts)
 *   goes first: a model switch costs seconds to minutes, so a job that avoids one may overtake at
 *   most PREFER_WITHIN - 1 jobs ahead of it. Beyond that window fairness wins and the head job
 *   makes a worker switch.
 * - The worker chosen for a job is the free one with the job's model loaded, else any free one
 *   that has the model.
 */
import { isLoadedFor, PREFER_WITHIN, preferLoaded, workerLoaded, type LoadKeySource } from '../model-preference.js';
import type { WorkerBeat } from './protocol.js';

export { PREFER_WITHIN };

export interface RoutedJob {
  id: string;
  spec: LoadKeySource;
}

export interface Route<J extends RoutedJob> {
  job: J;
  worker: WorkerBeat;
  /** The worker had the job's model loaded: no switch. */
  loaded: boolean;
}

/** The first job in `candidates` (fair order) a free worker can run, and that worker. */
export function route<J extends RoutedJob>(candidates: readonly J[], free: readonly WorkerBeat[], preferWithin = PREFER_WITHIN): Route<J> | undefined {
  if (free.length === 0) return undefined;
  const loadedOn = (job: J): WorkerBeat | undefined => free.find((w) => w.models.includes(job.spec.model) && isLoadedFor(job.spec, workerLoaded(w)));
  const preferred = preferLoaded(candidates, (job) => loadedOn(job) !== undefined, preferWithin);
  if (preferred) return { job: preferred, worker: loadedOn(preferred)!, loaded: true };
  for (const job of candidates) {
    const able = free.filter((w) => w.models.includes(job.spec.model));
    if (able.length === 0) continue;
    const worker = able.find((w) => workerLoaded(w).length === 0) ?? able[0]!;
    return { job, worker, loaded: isLoadedFor(job.spec, workerLoaded(worker)) };
  }
  return undefined;
}

/** A model no live worker has: the member's job waits for one (the text /queue shows). */
export function modelsWithoutWorker(models: Iterable<string>, workers: readonly WorkerBeat[]): string[] {
  const had = new Set(workers.flatMap((w) => w.models));
  return [...new Set(models)].filter((m) => !had.has(m)).sort();
}
