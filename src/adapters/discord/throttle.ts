// Progress edits for one message: at most one per interval, one in flight at a time, and only
// the latest state is sent (a burst of step events becomes one edit). A 429 pushes the next
// edit back instead of retrying it.

export interface EditThrottleOptions<T> {
  intervalMs: number;
  send: (state: T) => Promise<void>;
  now?: () => number;
}

export class EditThrottle<T> {
  readonly #intervalMs: number;
  readonly #send: (state: T) => Promise<void>;
  readonly #now: () => number;
  #pending: { state: T } | undefined;
  #inFlight: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #nextAt = 0;
  #closed = false;

  constructor(opts: EditThrottleOptions<T>) {
    this.#intervalMs = opts.intervalMs;
    this.#send = opts.send;
    this.#now = opts.now ?? Date.now;
  }

  /** Queue a state; it replaces any state not yet sent. */
  push(state: T): void {
    if (this.#closed) return;
    this.#pending = { state };
    this.#schedule();
  }

  /** Wait at least `ms` before the next edit (a 429's Retry-After). */
  backOff(ms: number): void {
    this.#nextAt = Math.max(this.#nextAt, this.#now() + ms);
  }

  /** Drop what is not sent yet, stop for good, and wait for the edit in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#pending = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  #schedule(): void {
    if (this.#inFlight || this.#timer || !this.#pending || this.#closed) return;
    const wait = this.#nextAt - this.#now();
    if (wait > 0) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        // A back-off may have moved the next slot while this timer waited.
        this.#schedule();
      }, wait);
      this.#timer.unref();
    } else {
      this.#run();
    }
  }

  #run(): void {
    const pending = this.#pending;
    if (!pending || this.#closed) return;
    this.#pending = undefined;
    this.#nextAt = this.#now() + this.#intervalMs;
    this.#inFlight = this.#send(pending.state)
      .catch(() => undefined)
      .finally(() => {
        this.#inFlight = undefined;
        this.#schedule();
      });
  }
}
