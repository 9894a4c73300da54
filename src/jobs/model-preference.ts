/**
 * The one policy for avoiding model switches, shared by the Redis routing (several workers) and
 * the local engine (one worker with an LRU of loaded models): among the first `within` waiting
 * jobs a caller offers, in fair order, the first whose model is loaded goes first. A model switch
 * costs seconds to minutes, so a job that avoids one may overtake at most `within` - 1 jobs; the
 * caller decides which jobs are offered (Redis: the fair order's head; local: only the jobs tied
 * with the head for the same fair round, so no member's turn moves to another round).
 *
 * "Loaded" compares load keys (engine/job-loras.ts loadKey): a job with LoRAs draws with its
 * model's LoRA variant, a model of its own, so the plain model being loaded does not count for it
 * (nor the variant for a job without them).
 */
import { requestLoadKey } from '../../engine/job-loras.js';
import type { LoraRequest } from '../../engine/types.js';
import type { JobSpec, WorkerStatus } from './types.js';

export const PREFER_WITHIN = 4;

export function preferLoaded<J>(candidates: readonly J[], isLoaded: (job: J) => boolean, within = PREFER_WITHIN): J | undefined {
  return candidates.slice(0, within).find(isLoaded);
}

/** What the load key of a job is made from: its model and the `<lora:…>` tags of its prompt (an
 * engine request may list LoRAs too). */
export type LoadKeySource = Pick<JobSpec, 'model' | 'prompt' | 'negativePrompt'> & { loras?: LoraRequest[] };

/** null: a prompt the engine refuses (it loads nothing for it). Specs are frozen once queued, and
 * a request is not changed once drawn. */
const keysOfSpecs = new WeakMap<LoadKeySource, string | null>();

/** What a job's engine will load; undefined when the engine will refuse its LoRA tags. */
export function loadKeyOf(spec: LoadKeySource): string | undefined {
  let key = keysOfSpecs.get(spec);
  if (key === undefined) {
    try {
      key = requestLoadKey(spec);
    } catch {
      key = null; // the engine refuses the job before loading anything
    }
    keysOfSpecs.set(spec, key);
  }
  return key ?? undefined;
}

/** The job's engine has what it will load (`loaded`: load keys, as Engine.loadedModels gives them). */
export function isLoadedFor(spec: LoadKeySource, loaded: readonly string[]): boolean {
  const key = loadKeyOf(spec);
  return key !== undefined && loaded.includes(key);
}

/**
 * The load keys an engine worker holds: its `loadedModels` list, or, from a worker of an earlier
 * version that reports only the model it drew last, that one.
 */
export function workerLoaded(worker: Pick<WorkerStatus, 'loaded' | 'loadedModels'>): readonly string[] {
  if (Array.isArray(worker.loadedModels)) return worker.loadedModels;
  return worker.loaded !== undefined ? [worker.loaded] : [];
}
