// "Already handled" memory for both adapters: gateway replays, repeated reactions and late job
// events are recognised, while a bot that runs for months does not keep every key forever.

/** A set that keeps only the `limit` most recently added keys (the oldest is forgotten first). */
export class RecentKeys {
  readonly #keys = new Set<string>();
  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
  }

  has(key: string): boolean {
    return this.#keys.has(key);
  }

  add(key: string): void {
    this.#keys.add(key);
    if (this.#keys.size > this.#limit) {
      const oldest = this.#keys.values().next().value;
      if (oldest !== undefined) this.#keys.delete(oldest);
    }
  }
}
