// The bot's view of the engine workers: their heartbeats, read every few seconds. The number of
// live workers is how many jobs the runner hands over at once. It also remembers when each model
// was last offered by a live worker, so the bot can tell "wait, a worker with it comes back" from
// "nobody has had it for a while".
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeBeat, keys, type WorkerBeat } from './protocol.js';

export const DIRECTORY_POLL_MS = 1_000;

export class WorkerDirectory {
  private list: WorkerBeat[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly keys: ReturnType<typeof keys>;
  /** Model → when a live worker last had it (ms); models unseen count from the bot's start. */
  private readonly lastSeen = new Map<string, number>();
  private readonly startedAt: number;
  /** The heartbeats were read at least once: an empty list then means "no workers". */
  private read = false;

  constructor(
    private readonly conn: Redis,
    prefix: string,
    private readonly log: Logger,
    private readonly onCount: (count: number) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.keys = keys(prefix);
    this.startedAt = now();
  }

  /** How long no live worker has had this model (0 while one has it); undefined before the first read. */
  modelMissingFor(model: string): number | undefined {
    if (!this.read) return undefined;
    if (this.list.some((w) => w.models.includes(model))) return 0;
    return this.now() - (this.lastSeen.get(model) ?? this.startedAt);
  }

  workers(): WorkerBeat[] {
    return this.list;
  }

  async refresh(): Promise<void> {
    if (this.conn.status !== 'ready') return;
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.conn.scan(cursor, 'MATCH', this.keys.workerPattern, 'COUNT', 200);
      cursor = next;
      found.push(...batch);
    } while (cursor !== '0');
    const values = found.length > 0 ? await this.conn.mget(...found) : [];
    const beats: WorkerBeat[] = [];
    for (const value of values) {
      const beat = value ? decodeBeat(value) : undefined;
      if (beat) beats.push(beat);
    }
    beats.sort((a, b) => a.id.localeCompare(b.id));
    const at = this.now();
    for (const beat of beats) for (const model of beat.models) this.lastSeen.set(model, at);
    this.read = true;
    const before = this.list.length;
    this.list = beats;
    if (beats.length !== before) {
      this.log.info({ workers: beats.map((b) => b.id) }, 'engine workers changed');
      this.onCount(beats.length);
    }
  }

  start(): void {
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.log.debug({ err }, 'could not read worker heartbeats'));
    }, DIRECTORY_POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
