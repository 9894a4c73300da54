// Telegram's flood control: a 429 says how long to wait (`parameters.retry_after`, seconds), and
// calling again sooner only earns another 429 and a longer ban. auto-retry waits out short waits
// itself; a longer one comes back as an error, and whoever retries later (a delivery, a status
// edit, the poll loop) must not go before the time is up. This gate sits outermost on the API, so
// every call, whoever makes it, waits until Telegram's time for that chat has passed.
import type { Transformer } from 'grammy';

/** What the gate needs of an AbortSignal (grammY types its signals with a shim of its own). */
export interface Abortable {
  readonly aborted: boolean;
  addEventListener(type: 'abort', listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: 'abort', listener: () => void): void;
}

export interface FloodGateOptions {
  now?: () => number;
  /** Waits `ms` unless `signal` aborts first (tests inject a recorder). */
  sleep?: (ms: number, signal?: Abortable) => Promise<void>;
  onWait?: (info: { method: string; scope: string; waitMs: number }) => void;
}

export class FloodGate {
  /** scope (a chat id, or "bot" for calls without one) → when calls may go again (ms). */
  private readonly until = new Map<string, number>();
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal?: Abortable) => Promise<void>;

  constructor(private readonly options: FloodGateOptions = {}) {
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? abortableSleep;
  }

  /** How long calls for this chat (or the bot, without one) must still wait, in ms. */
  remainingMs(chatId?: number | string): number {
    const scope = chatId === undefined ? 'bot' : String(chatId);
    return Math.max(0, (this.until.get(scope) ?? 0) - this.now());
  }

  readonly transformer: Transformer = async (prev, method, payload, signal) => {
    const scope = scopeOf(payload);
    for (let wait = this.remainingMs(scope); wait > 0; wait = this.remainingMs(scope)) {
      this.options.onWait?.({ method, scope: scope ?? 'bot', waitMs: wait });
      await this.sleep(wait, signal);
    }
    const result = await prev(method, payload, signal);
    const retryAfter = result.ok ? undefined : result.parameters?.retry_after;
    if (!result.ok && result.error_code === 429 && typeof retryAfter === 'number' && retryAfter > 0) {
      const key = scope ?? 'bot';
      this.until.set(key, Math.max(this.until.get(key) ?? 0, this.now() + retryAfter * 1000));
    }
    return result;
  };
}

function scopeOf(payload: unknown): string | undefined {
  if (!payload || typeof payload !== 'object' || !('chat_id' in payload)) return undefined;
  const chatId = (payload as { chat_id?: unknown }).chat_id;
  return typeof chatId === 'number' || typeof chatId === 'string' ? String(chatId) : undefined;
}

function abortableSleep(ms: number, signal?: Abortable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new Error('aborted while waiting out a flood limit'));
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    // A delivery waiting here must not keep a stopping process alive.
    timer.unref();
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error('aborted while waiting out a flood limit'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
