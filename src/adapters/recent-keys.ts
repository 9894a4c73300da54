// "Already handled" memory for both adapters: gateway replays, repeated reactions and late job
// events are recognised, while a bot that runs for months does not keep every key forever.

export interface RecentKeysOptions {
  /**
   * Forget a key this long after it was added. Reactions need it: the same member removing and
   * adding 🔁 again is a new request, while the platform's replay of one event arrives within
   * seconds.
   */
  ttlMs?: number;
  /** Clock (tests inject one). */
  now?: () => number;
}

/** A set that keeps only the `limit` most recently added keys (the oldest is forgotten first). */
export class RecentKeys {
  /** key → when it was added; Map keeps insertion order, so the first entry is the oldest. */
  readonly #keys = new Map<string, number>();
  readonly #limit: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(limit: number, options: RecentKeysOptions = {}) {
    this.#limit = limit;
    this.#ttlMs = options.ttlMs ?? Number.POSITIVE_INFINITY;
    this.#now = options.now ?? Date.now;
  }

  has(key: string): boolean {
    const added = this.#keys.get(key);
    if (added === undefined) return false;
    if (this.#now() - added < this.#ttlMs) return true;
    this.#keys.delete(key);
    return false;
  }

  /** Forget a key now (a reaction was removed: adding it again is a new request). */
  delete(key: string): void {
    this.#keys.delete(key);
  }

  add(key: string): void {
    // Re-adding moves the key to the young end, so its window starts again.
    this.#keys.delete(key);
    this.#keys.set(key, this.#now());
    if (this.#keys.size > this.#limit) {
      const oldest = this.#keys.keys().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
  }
}
