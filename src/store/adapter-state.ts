// What a platform adapter keeps beside the jobs: an inbox of raw platform updates (written before
// the platform is told they arrived, so a kill never loses one), a lease naming the instance that
// polls, and small per-job notes. Only src/store touches keyv, so the adapter gets these
// operations and never the key-value store itself.
import type Keyv from 'keyv';
import type { Config } from '../config/schema.js';
import { openKeyv } from './index.js';

export interface InboxEntry<T> {
  /** The platform's update id (Telegram's update_id): unique, and kept when the update is re-sent. */
  id: number;
  payload: T;
  /** A status message already sent for this update, so handling it again reuses it. */
  placeholder?: number;
  /** Handled; kept until the platform has been told (then pruned) so a re-sent copy is recognised. */
  done?: boolean;
}

export interface PollLease {
  /** Random id of the process that polls. */
  instance: string;
  /** When it claimed the lease (ms). */
  since: number;
  /** Its last heartbeat (ms): a lease not renewed for a while belongs to a dead process. */
  at: number;
}

export interface AdapterState<T> {
  /** Everything not yet pruned, in id order. */
  entries(): Promise<InboxEntry<T>[]>;
  /** Durable before it resolves; ids already present are left as they are. */
  add(items: { id: number; payload: T }[]): Promise<void>;
  setPlaceholder(id: number, messageId: number): Promise<void>;
  markDone(id: number): Promise<void>;
  /** Drops handled entries below `confirmedBelow` (the platform will not send them again). */
  prune(confirmedBelow: number): Promise<void>;
  readLease(): Promise<PollLease | undefined>;
  writeLease(lease: PollLease): Promise<void>;
  /** Small per-job notes (message ids of a result's extra messages). */
  getNote(jobId: string): Promise<string[] | undefined>;
  setNote(jobId: string, values: string[]): Promise<void>;
  deleteNote(jobId: string): Promise<void>;
  close(): Promise<void>;
}

/**
 * The inbox is one record: a handful of updates are pending at a time, and one record needs no
 * index that a kill could leave half-written. Read-modify-write goes through one in-process lock.
 */
class KeyvAdapterState<T> implements AdapterState<T> {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly kv: Keyv,
    private readonly prefix: string,
  ) {}

  entries(): Promise<InboxEntry<T>[]> {
    return this.locked(async () => {
      const list = await this.read();
      for (const entry of list) {
        const placeholder = entry.done ? undefined : await this.kv.get<number>(`${this.prefix}:ph:${entry.id}`);
        if (typeof placeholder === 'number') entry.placeholder = placeholder;
      }
      return list;
    });
  }

  add(items: { id: number; payload: T }[]): Promise<void> {
    return this.update((list) => {
      const known = new Set(list.map((e) => e.id));
      for (const item of items) if (!known.has(item.id)) list.push({ id: item.id, payload: item.payload });
      return list.sort((a, b) => a.id - b.id);
    });
  }

  /** Its own small record, outside the inbox's lock: it is written while members wait. */
  setPlaceholder(id: number, messageId: number): Promise<void> {
    return this.write(`${this.prefix}:ph:${id}`, messageId);
  }

  markDone(id: number): Promise<void> {
    return this.update((list) => list.map((e) => (e.id === id ? { ...e, done: true } : e)));
  }

  prune(confirmedBelow: number): Promise<void> {
    const gone: number[] = [];
    return this.update((list) =>
      list.filter((e) => {
        const drop = e.done === true && e.id < confirmedBelow;
        if (drop) gone.push(e.id);
        return !drop;
      }),
    ).then(async () => {
      for (const id of gone) await this.kv.delete(`${this.prefix}:ph:${id}`);
    });
  }

  async readLease(): Promise<PollLease | undefined> {
    return (await this.kv.get<PollLease>(`${this.prefix}:lease`)) ?? undefined;
  }

  writeLease(lease: PollLease): Promise<void> {
    return this.write(`${this.prefix}:lease`, lease);
  }

  async getNote(jobId: string): Promise<string[] | undefined> {
    return (await this.kv.get<string[]>(`${this.prefix}:note:${jobId}`)) ?? undefined;
  }

  setNote(jobId: string, values: string[]): Promise<void> {
    return this.write(`${this.prefix}:note:${jobId}`, values);
  }

  async deleteNote(jobId: string): Promise<void> {
    await this.kv.delete(`${this.prefix}:note:${jobId}`);
  }

  async close(): Promise<void> {
    await this.chain.catch(() => undefined);
    await this.kv.disconnect();
  }

  private async read(): Promise<InboxEntry<T>[]> {
    return (await this.kv.get<InboxEntry<T>[]>(`${this.prefix}:inbox`)) ?? [];
  }

  private update(change: (list: InboxEntry<T>[]) => InboxEntry<T>[]): Promise<void> {
    return this.locked(async () => {
      const before = await this.read();
      const after = change([...before]);
      if (JSON.stringify(after) !== JSON.stringify(before)) await this.write(`${this.prefix}:inbox`, after);
    });
  }

  /** A write that must land: keyv reports some failures as `false` instead of throwing. */
  private async write(key: string, value: unknown): Promise<void> {
    const ok = await this.kv.set(key, value);
    if (ok === false) throw new Error(`store write failed for ${this.prefix}`);
  }

  private locked<R>(work: () => Promise<R>): Promise<R> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/**
 * Opens the adapter's state on the configured storage (its own connection, so the adapter can
 * open and close it without the core's store; SQLite's WAL and busy timeout let both write).
 */
export async function openAdapterState<T>(config: Config, platform: string, onError?: (err: unknown) => void): Promise<AdapterState<T>> {
  const kv = await openKeyv(config.storage.url, onError);
  return new KeyvAdapterState<T>(kv, `adapter:${platform}`);
}

