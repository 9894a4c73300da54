import type Keyv from 'keyv';
import type { Job, JobRepo, Platform } from '../jobs/types.js';

/**
 * Job records on keyv, which has get/set/delete and nothing else: no listing, no transactions.
 * So the repo keeps its own index records beside the jobs.
 *
 * Keys (inside the store's namespace):
 *   job:<id>                     the Job — the one source of truth
 *   seq                          the last seq handed out (durable before it is used)
 *   active:buckets, active:<b>   ids of active jobs (queued, running, done-undelivered),
 *                                bucketed by seq (b = floor(seq / 1024)) so that no write
 *                                rewrites one huge list
 *   finished:hours, finished:<h> ids of finished jobs by the hour they finished (retention)
 *   idem:<key>                   idempotency key → id
 *   msg:<platform>:<chat>:<msg>  delivered result message → id (🔁 reactions after a restart)
 *
 * Write order of put() — chosen so that a stop between ANY two writes neither loses an
 * acknowledged job nor runs/delivers one twice:
 *   1. active index (if the job is active): a pointer written before its target. A stop right
 *      after it leaves an id without a record; readers drop such ids ("index without record").
 *   2. idempotency key, before the record, for the same reason: a re-delivered platform update
 *      after a stop here finds no record and is taken as new, which is right since nothing
 *      was acknowledged.
 *   3. the record itself. From here on the job exists, whatever happens next.
 *   4. (finished jobs) finished index, then message index, then — last — removal from the
 *      active index. A stop before that removal leaves the id in the active index with a
 *      finished record: active() sees the record's status, redoes steps 4 and drops the id. The
 *      record decides, so a delivered job is never run or delivered again.
 * delete() removes the record first and the index entries after it; index entries whose
 * record is gone are dropped whenever they are read.
 * Every write goes through one in-process lock: read-modify-write of an index is not atomic.
 */

const BUCKET = 1024;
const HOUR_MS = 3_600_000;
const ID_PATTERN = /^[0-9a-z]{1,32}$/;

export function isActiveJob(job: Job): boolean {
  return job.status === 'queued' || job.status === 'running' || (job.status === 'done' && !job.delivery);
}

function messageKey(platform: Platform | string, chatId: string, messageId: string): string {
  return `msg:${platform}:${chatId}:${messageId}`;
}

function deliveredMessageKey(job: Job): string | undefined {
  const ref = job.delivery?.ref;
  if (!ref?.chatId || !ref.messageId) return undefined;
  return messageKey(job.target.platform, ref.chatId, ref.messageId);
}

function finishedHour(job: Job): number {
  return Math.floor((job.finishedAt ?? job.createdAt) / HOUR_MS);
}

export class KeyvJobRepo implements JobRepo {
  private chain: Promise<unknown> = Promise.resolve();
  private lastSeq: number | undefined;
  private activeBuckets: Set<number> | undefined;
  private finishedHours: Set<number> | undefined;
  /** Idempotency and message keys this process has already written (saves a write per put). */
  private readonly writtenPointers = new Set<string>();
  private readonly lists = new Map<string, string[]>();

  constructor(private readonly kv: Keyv) {}

  put(job: Job): Promise<void> {
    return this.locked(async () => {
      const active = isActiveJob(job);
      if (active) await this.addToBucket('active', Math.floor(job.seq / BUCKET), job.id);
      if (job.idempotencyKey) await this.writePointer(`idem:${job.idempotencyKey}`, job.id);
      await this.write(`job:${job.id}`, job);
      if (!active) await this.indexFinished(job);
    });
  }

  async get(id: string): Promise<Job | undefined> {
    if (!ID_PATTERN.test(id)) return undefined;
    return (await this.kv.get<Job>(`job:${id}`)) ?? undefined;
  }

  active(): Promise<Job[]> {
    return this.locked(async () => {
      const out: Job[] = [];
      for (const bucket of [...(await this.buckets('active'))].sort((a, b) => a - b)) {
        const ids = await this.readList(`active:${bucket}`);
        const jobs = await this.readJobs(ids);
        let changed = false;
        const keep: string[] = [];
        for (const [i, id] of ids.entries()) {
          const job = jobs[i];
          if (!job) {
            changed = true;
          } else if (isActiveJob(job)) {
            keep.push(id);
            out.push(job);
          } else {
            // A stop between a finished record and its index update: finish the update now.
            await this.indexFinishedPointers(job);
            changed = true;
          }
        }
        if (changed) await this.writeBucket('active', bucket, keep);
      }
      return out.sort((a, b) => a.seq - b.seq);
    });
  }

  async byIdempotencyKey(key: string): Promise<Job | undefined> {
    const id = await this.kv.get<string>(`idem:${key}`);
    return id ? this.get(id) : undefined;
  }

  async byMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined> {
    const id = await this.kv.get<string>(messageKey(platform, chatId, messageId));
    return id ? this.get(id) : undefined;
  }

  nextSeq(): Promise<number> {
    return this.locked(async () => {
      if (this.lastSeq === undefined) this.lastSeq = (await this.kv.get<number>('seq')) ?? 0;
      const next = this.lastSeq + 1;
      // Durable before anyone uses it: a restart never hands out the same seq twice.
      await this.write('seq', next);
      this.lastSeq = next;
      return next;
    });
  }

  finishedBefore(before: number): Promise<Job[]> {
    return this.locked(async () => {
      const out: Job[] = [];
      const hours = [...(await this.buckets('finished'))].filter((h) => h * HOUR_MS < before).sort((a, b) => a - b);
      for (const hour of hours) {
        const ids = await this.readList(`finished:${hour}`);
        const jobs = await this.readJobs(ids);
        const keep: string[] = [];
        for (const [i, id] of ids.entries()) {
          const job = jobs[i];
          if (!job) continue;
          keep.push(id);
          if (!isActiveJob(job) && (job.finishedAt ?? job.createdAt) < before) out.push(job);
        }
        if (keep.length !== ids.length) await this.writeBucket('finished', hour, keep);
      }
      return out.sort((a, b) => (a.finishedAt ?? 0) - (b.finishedAt ?? 0));
    });
  }

  recentFinished(limit: number, before: number): Promise<Job[]> {
    return this.locked(async () => {
      const out: Job[] = [];
      const hours = [...(await this.buckets('finished'))].filter((h) => h * HOUR_MS < before).sort((a, b) => b - a);
      for (const hour of hours) {
        if (out.length >= limit) break;
        const ids = await this.readList(`finished:${hour}`);
        const jobs = await this.readJobs(ids);
        for (const job of jobs) {
          if (job && !isActiveJob(job) && (job.finishedAt ?? job.createdAt) < before) out.push(job);
        }
      }
      return out.sort((a, b) => (b.finishedAt ?? b.createdAt) - (a.finishedAt ?? a.createdAt));
    });
  }

  delete(id: string): Promise<void> {
    return this.locked(async () => {
      const job = await this.get(id);
      if (!job) return;
      await this.kv.delete(`job:${id}`);
      if (job.idempotencyKey) await this.deletePointer(`idem:${job.idempotencyKey}`, id);
      const msg = deliveredMessageKey(job);
      if (msg) await this.deletePointer(msg, id);
      await this.removeFromBucket('finished', finishedHour(job), id);
      await this.removeFromBucket('active', Math.floor(job.seq / BUCKET), id);
    });
  }

  /** Waits for writes already started (close() calls it before disconnecting). */
  async drain(): Promise<void> {
    await this.chain.catch(() => undefined);
  }

  private async indexFinished(job: Job): Promise<void> {
    await this.indexFinishedPointers(job);
    await this.removeFromBucket('active', Math.floor(job.seq / BUCKET), job.id);
  }

  private async indexFinishedPointers(job: Job): Promise<void> {
    await this.addToBucket('finished', finishedHour(job), job.id);
    const msg = deliveredMessageKey(job);
    if (msg) await this.writePointer(msg, job.id);
  }

  private locked<T>(work: () => Promise<T>): Promise<T> {
    const run = this.chain.then(work, work);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A write that must land: keyv reports some failures as `false` instead of throwing. */
  private async write(key: string, value: unknown): Promise<void> {
    const ok = await this.kv.set(key, value);
    if (ok === false) throw new Error(`store write failed for ${key.split(':')[0]}`);
  }

  private async writePointer(key: string, id: string): Promise<void> {
    if (this.writtenPointers.has(key)) return;
    await this.write(key, id);
    this.writtenPointers.add(key);
  }

  private async deletePointer(key: string, id: string): Promise<void> {
    // A newer job may have taken the key over (e.g. a message id reused): leave that alone.
    if ((await this.kv.get<string>(key)) === id) await this.kv.delete(key);
    this.writtenPointers.delete(key);
  }

  /**
   * An index bucket, from memory after its first read: this process is the store's only writer,
   * so the copy stays true, and a put does not have to parse a thousand ids first. Returns a
   * copy the caller may change; writeList() makes the change real.
   */
  private async readList(key: string): Promise<string[]> {
    let ids = this.lists.get(key);
    if (!ids) {
      const value = await this.kv.get<unknown>(key);
      ids = Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
      this.lists.set(key, ids);
    }
    return [...ids];
  }

  private async writeList(key: string, ids: string[]): Promise<void> {
    this.lists.delete(key); // if the write fails, the next read goes back to the store
    await this.write(key, ids);
    this.lists.set(key, ids);
  }

  private async readJobs(ids: string[]): Promise<(Job | undefined)[]> {
    if (ids.length === 0) return [];
    const values = await this.kv.get<Job>(ids.map((id) => `job:${id}`));
    return ids.map((_, i) => values[i] ?? undefined);
  }

  private async buckets(kind: 'active' | 'finished'): Promise<Set<number>> {
    const cached = kind === 'active' ? this.activeBuckets : this.finishedHours;
    if (cached) return cached;
    const stored = await this.kv.get<unknown>(`${kind}:${kind === 'active' ? 'buckets' : 'hours'}`);
    const set = new Set<number>(Array.isArray(stored) ? stored.filter((v): v is number => Number.isInteger(v)) : []);
    if (kind === 'active') this.activeBuckets = set;
    else this.finishedHours = set;
    return set;
  }

  private async writeBucketList(kind: 'active' | 'finished', set: Set<number>): Promise<void> {
    await this.write(`${kind}:${kind === 'active' ? 'buckets' : 'hours'}`, [...set].sort((a, b) => a - b));
  }

  private async addToBucket(kind: 'active' | 'finished', bucket: number, id: string): Promise<void> {
    const set = await this.buckets(kind);
    if (!set.has(bucket)) {
      // The list of buckets points at the bucket: written first, like every pointer.
      set.add(bucket);
      try {
        await this.writeBucketList(kind, set);
      } catch (err) {
        set.delete(bucket);
        throw err;
      }
    }
    const ids = await this.readList(`${kind}:${bucket}`);
    if (ids.includes(id)) return;
    ids.push(id);
    await this.writeList(`${kind}:${bucket}`, ids);
  }

  private async removeFromBucket(kind: 'active' | 'finished', bucket: number, id: string): Promise<void> {
    const set = await this.buckets(kind);
    if (!set.has(bucket)) return;
    const ids = await this.readList(`${kind}:${bucket}`);
    if (!ids.includes(id)) return;
    await this.writeBucket(
      kind,
      bucket,
      ids.filter((x) => x !== id),
    );
  }

  /** Rewrites a bucket; an empty one is deleted, then unlisted (content first, pointer after). */
  private async writeBucket(kind: 'active' | 'finished', bucket: number, ids: string[]): Promise<void> {
    if (ids.length > 0) {
      await this.writeList(`${kind}:${bucket}`, ids);
      return;
    }
    this.lists.delete(`${kind}:${bucket}`);
    await this.kv.delete(`${kind}:${bucket}`);
    this.lists.set(`${kind}:${bucket}`, []);
    const set = await this.buckets(kind);
    if (set.delete(bucket)) await this.writeBucketList(kind, set);
  }
}
