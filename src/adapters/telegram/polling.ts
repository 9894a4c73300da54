// Long polling with at-least-once intake. Telegram forgets an update once a getUpdates asks for a
// higher offset, so each batch is written to a durable inbox BEFORE the next call confirms it, and
// handled from there; a kill at any moment leaves every unhandled update either unconfirmed at
// Telegram or in the inbox, and the next start handles what the inbox still holds.
//
// Polling never ends silently: errors are retried (429 after exactly its retry_after), a 409
// Conflict is retried with backoff unless a newer instance holds the poll lease (a deploy overlap:
// the old one yields, the new one keeps polling), and only a rejected token (401) ends polling,
// through `fatal` so the process can exit non-zero.
import { randomBytes } from 'node:crypto';
import { GrammyError, type Api } from 'grammy';
import type { Update } from 'grammy/types';
import type { Logger } from 'pino';
import type { AdapterState, PollLease } from '../../store/adapter-state.js';
import { RecentKeys } from '../recent-keys.js';
import { describeFailure } from './errors.js';

export interface PollTiming {
  /** Long-poll wait Telegram may hold a getUpdates for, in seconds. */
  pollTimeoutSeconds: number;
  /** First wait after a 409; doubles per conflict in a row up to conflictMaxMs. */
  conflictBaseMs: number;
  conflictMaxMs: number;
  /** Wait after a network error or a 5xx that auto-retry gave up on. */
  errorRetryMs: number;
  /** How often the polling instance renews its lease. */
  heartbeatMs: number;
  /** A lease not renewed for this long belongs to a process that is gone. */
  leaseStaleMs: number;
  /** How often an instance that yielded looks whether the newer one is still there. */
  yieldCheckMs: number;
}

export const DEFAULT_POLL_TIMING: PollTiming = {
  pollTimeoutSeconds: 30,
  conflictBaseMs: 1_000,
  conflictMaxMs: 30_000,
  errorRetryMs: 3_000,
  heartbeatMs: 30_000,
  leaseStaleMs: 120_000,
  yieldCheckMs: 30_000,
};

/** grammY types signals with an AbortController shim; Node's own signal is what it gets at run time. */
type GrammySignal = Parameters<Api['getUpdates']>[1];

export type AllowedUpdate = Exclude<keyof Update, 'update_id'>;

export interface PollerDeps {
  api: Api;
  state: AdapterState<Update>;
  log: Logger;
  allowedUpdates: readonly AllowedUpdate[];
  /** Handles one update; resolves when its job or refusal is recorded and answered. */
  handle(update: Update): Promise<void>;
  /** Polling cannot go on: Telegram rejects the token. */
  fatal(reason: string): void;
  timing?: Partial<PollTiming>;
  now?: () => number;
}

export const REVOKED_TOKEN =
  'telegram: Telegram no longer accepts the bot token (401 Unauthorized); polling stopped. Set a valid TELEGRAM_TOKEN (from @BotFather) and restart.';

export class Poller {
  private readonly timing: PollTiming;
  private readonly now: () => number;
  private readonly instance = randomBytes(6).toString('hex');
  private readonly stopController = new AbortController();
  private readonly inflight = new Set<Promise<void>>();
  /** Updates handed to the handler in this process (a re-sent copy is not handled twice). */
  private readonly dispatched = new RecentKeys(10_000);
  private readonly placeholders = new Map<number, number>();
  private offset: number | undefined;
  /** Handled entries that may be pruned once Telegram has confirmed them. */
  private doneWaiting = false;
  private lastHeartbeat = 0;
  /** A newer instance polls: this one takes no updates (and must not disturb its long poll). */
  private yielded = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly deps: PollerDeps) {
    this.timing = { ...DEFAULT_POLL_TIMING, ...deps.timing };
    this.now = deps.now ?? Date.now;
  }

  private get stopped(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Claims the poll lease, hands the inbox's unhandled updates to the handler, and starts polling. */
  async start(): Promise<void> {
    await this.claimLease();
    const entries = await this.deps.state.entries();
    const last = entries.at(-1);
    // Everything at or below the inbox's last id is stored or already confirmed; this confirms the rest.
    if (last) this.offset = last.id + 1;
    const pending = entries.filter((e) => !e.done);
    if (pending.length > 0) this.deps.log.info({ updates: pending.length }, 'telegram: handling updates left in the inbox by the last run');
    for (const entry of entries) {
      if (entry.placeholder !== undefined) this.placeholders.set(entry.id, entry.placeholder);
      if (entry.done) this.doneWaiting = true;
    }
    for (const entry of pending) this.dispatch(entry.payload);
    this.loop = this.run();
  }

  /** The status message already sent for this update by an earlier run, if any. */
  placeholderOf(updateId: number): number | undefined {
    return this.placeholders.get(updateId);
  }

  /** Remembers the status message sent for an update, so handling it again after a kill reuses it. */
  async rememberPlaceholder(updateId: number, messageId: number): Promise<void> {
    this.placeholders.set(updateId, messageId);
    await this.deps.state.setPlaceholder(updateId, messageId);
  }

  /** Stops polling, waits (up to `flushMs`) for updates being handled, then confirms what was taken. */
  async stop(flushMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopController.abort();
    await this.loop;
    const flushed = new AbortController();
    await Promise.race([Promise.allSettled([...this.inflight]), sleep(flushMs, flushed.signal)]);
    flushed.abort();
    if (this.offset !== undefined && !this.yielded) {
      // Everything taken is in the inbox: confirming it saves the next start a round trip.
      const ok = await this.deps.api
        .getUpdates({ offset: this.offset, limit: 1, timeout: 0 })
        .then(() => true)
        .catch(() => false);
      if (ok) await this.prune(this.offset);
    }
  }

  private async run(): Promise<void> {
    let conflicts = 0;
    const { api, log, allowedUpdates } = this.deps;
    while (!this.stopped) {
      const offset = this.offset;
      try {
        const updates = await api.getUpdates(
          {
            ...(offset !== undefined ? { offset } : {}),
            timeout: this.timing.pollTimeoutSeconds,
            allowed_updates: allowedUpdates,
          },
          this.stopController.signal as unknown as GrammySignal,
        );
        if (conflicts > 0) log.info({ conflicts }, 'telegram: polling again after 409 Conflict');
        conflicts = 0;
        if (offset !== undefined) await this.prune(offset);
        await this.heartbeat();
        if (updates.length > 0) await this.take(updates);
      } catch (err) {
        if (this.stopped) return;
        if (err instanceof GrammyError && err.error_code === 401) {
          log.fatal(describeFailure(err), REVOKED_TOKEN);
          this.deps.fatal(REVOKED_TOKEN);
          return;
        }
        if (err instanceof GrammyError && err.error_code === 409) {
          if (await this.newerInstancePolls()) {
            await this.yieldToNewer();
            conflicts = 0;
            continue;
          }
          conflicts += 1;
          const wait = Math.min(this.timing.conflictMaxMs, this.timing.conflictBaseMs * 2 ** (conflicts - 1));
          // Jitter: two instances that both back off must not retry in lockstep.
          const jittered = Math.round(wait * (0.75 + Math.random() * 0.5));
          log.warn(
            { conflicts, retryInMs: jittered, ...describeFailure(err) },
            'telegram: getUpdates answered 409 Conflict (another poller with this token, or a Telegram hiccup); retrying',
          );
          await this.pause(jittered);
          continue;
        }
        const retryAfter = err instanceof GrammyError ? err.parameters.retry_after : undefined;
        const wait = retryAfter !== undefined ? retryAfter * 1000 : this.timing.errorRetryMs;
        log.warn({ retryInMs: wait, ...describeFailure(err) }, 'telegram: getUpdates failed; retrying');
        await this.pause(wait);
      }
    }
  }

  /** Stores a batch, then moves the offset past it (the next call confirms it) and handles it. */
  private async take(updates: Update[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.deps.state.add(updates.map((u) => ({ id: u.update_id, payload: u })));
        break;
      } catch (err) {
        // Not stored, so not confirmed: Telegram keeps the batch and sends it again.
        this.deps.log.error({ err, attempt }, 'telegram: updates could not be stored; not confirming them, retrying');
        await this.pause(this.timing.errorRetryMs);
        if (this.stopped) return;
      }
    }
    const last = updates.at(-1);
    if (last) this.offset = Math.max(this.offset ?? 0, last.update_id + 1);
    for (const update of updates) this.dispatch(update);
  }

  private dispatch(update: Update): void {
    const key = String(update.update_id);
    if (this.dispatched.has(key)) return;
    this.dispatched.add(key);
    const task: Promise<void> = this.deps
      .handle(update)
      .catch((err: unknown) => this.deps.log.error({ updateId: update.update_id, err }, 'telegram: an update could not be handled'))
      .then(() => this.deps.state.markDone(update.update_id))
      .then(() => {
        this.doneWaiting = true;
        this.placeholders.delete(update.update_id);
      })
      .catch((err: unknown) =>
        this.deps.log.warn({ updateId: update.update_id, err }, 'telegram: update handled but not marked so; it is looked at again at the next start'),
      )
      .finally(() => this.inflight.delete(task));
    this.inflight.add(task);
  }

  private async prune(confirmedBelow: number): Promise<void> {
    if (!this.doneWaiting) return;
    this.doneWaiting = false;
    await this.deps.state.prune(confirmedBelow).catch((err: unknown) => {
      this.doneWaiting = true;
      this.deps.log.debug({ err }, 'telegram: inbox prune failed; tried again after the next poll');
    });
  }

  private async claimLease(): Promise<void> {
    const at = this.now();
    await this.deps.state
      .writeLease({ instance: this.instance, since: at, at })
      .then(() => (this.lastHeartbeat = at))
      .catch((err: unknown) => this.deps.log.warn({ err }, 'telegram: poll lease not written; a deploy overlap cannot tell which instance is newer'));
  }

  private async heartbeat(): Promise<void> {
    const at = this.now();
    if (at - this.lastHeartbeat < this.timing.heartbeatMs) return;
    this.lastHeartbeat = at;
    const lease = await this.readLease();
    // A newer instance's lease is not overwritten: its next poll ends ours with 409 and we yield then.
    if (lease && lease.instance !== this.instance && at - lease.at < this.timing.leaseStaleMs) return;
    await this.deps.state.writeLease({ instance: this.instance, since: lease?.instance === this.instance ? lease.since : at, at }).catch(() => undefined);
  }

  private async readLease(): Promise<PollLease | undefined> {
    return this.deps.state.readLease().catch(() => undefined);
  }

  private async newerInstancePolls(): Promise<boolean> {
    const lease = await this.readLease();
    return lease !== undefined && lease.instance !== this.instance && this.now() - lease.at < this.timing.leaseStaleMs;
  }

  /** A newer instance polls (a deploy overlap): stop taking updates until its lease goes stale. */
  private async yieldToNewer(): Promise<void> {
    const { log } = this.deps;
    log.warn('telegram: a newer instance of this bot polls now (409 Conflict); this one stops taking updates and only finishes what it has');
    this.yielded = true;
    while (!this.stopped) {
      await this.pause(this.timing.yieldCheckMs);
      if (this.stopped || (await this.newerInstancePolls())) continue;
      log.warn('telegram: the newer instance stopped renewing its poll lease; this one polls again');
      this.yielded = false;
      await this.claimLease();
      return;
    }
  }

  private pause(ms: number): Promise<void> {
    return sleep(ms, this.stopController.signal);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
