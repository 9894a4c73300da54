/**
 * The one policy for avoiding model switches, shared by the Redis routing (several workers) and
 * the local engine (one worker with an LRU of loaded models): among the first `within` waiting
 * jobs a caller offers, in fair order, the first whose model is loaded goes first. A model switch
 * costs seconds to minutes, so a job that avoids one may overtake at most `within` - 1 jobs; the
 * caller decides which jobs are offered (Redis: the fair order's head; local: only the jobs tied
 * with the head for the same fair round, so no member's turn moves to another round).
 */
export const PREFER_WITHIN = 4;

export function preferLoaded<J>(candidates: readonly J[], isLoaded: (job: J) => boolean, within = PREFER_WITHIN): J | undefined {
  return candidates.slice(0, within).find(isLoaded);
}
