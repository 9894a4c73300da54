/**
 * The bot's side of the Redis backend: a Drawer that hands one job at a time to BullMQ and waits
 * for a remote engine worker to draw it.
 *
 * Routing: choose() picks, for the free workers, the waiting job to start (see routing.ts) and
 * reserves the chosen worker until the job ends; the job goes to its model's BullMQ queue, which
 * only workers with that model read.
 *
 * Fairness stays in the bot: the schedule's FairQueue picks the next job exactly as with the
 * local engine, and the runner only dispatches as many jobs as there are live workers (its slots
 * follow the heartbeats, see WorkerDirectory). So BullMQ never holds a backlog whose order could
 * disagree with the fair policy — it is the reliable hand-over (locks, stalled-job recovery,
 * persistence), not the scheduler.
 */
import { Queue, QueueEvents, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import sharp from 'sharp';
import {
  EngineError,
  type EngineErrorCode,
  type ExecutionProviderName,
  type GenerateOptions,
  type GenerateRequest,
  type GenerateResult,
  type ModelStage,
  type StepProgress,
} from '../../../engine/types.js';
import { BackendUnavailableError, SHUTDOWN_REASON, type Drawer } from '../drawer.js';
import { loadKeyOf, workerLoaded } from '../model-preference.js';
import type { Job } from '../types.js';
import {
  bullIdOf,
  fromWireProgress,
  keys,
  QUEUE_NAME,
  queueNameFor,
  toWireRequest,
  type DrawPayload,
  type WireFailure,
  type WireProgress,
  type WireResult,
  type WireStage,
  type WorkerBeat,
} from './protocol.js';
import { route } from './routing.js';

/** Queue events kept in Redis's stream; enough for a bot restart, small enough to stay cheap. */
const EVENTS_MAX_LEN = 2_000;
const ENGINE_CODES: readonly string[] = ['cancelled', 'bad_request', 'model', 'internal', 'worker_crashed'];

export interface DispatcherOptions {
  prefix: string;
  resultTtlHours: number;
  /** Commands: fails fast while Redis is away. */
  producer: Redis;
  /** QueueEvents' blocking reads. */
  events: Redis;
  log: Logger;
  /** The live engine workers (heartbeats). */
  workers: () => WorkerBeat[];
  /** See routing.ts PREFER_WITHIN; 0 turns the loaded-model preference off (bench:cluster's baseline). */
  preferWithin?: number;
}

interface ModelQueue {
  queue: Queue<DrawPayload>;
  events: QueueEvents;
  /** The events' own connection (blocking reads cannot share one). */
  reader: Redis;
}

/** How often a job started on a worker that had its model loaded (bench:cluster's figure). */
export interface RoutingCounts {
  loaded: number;
  switched: number;
}

/** A BullMQ failure back into the engine's error: the worker's code, or a lost worker. */
export function failureOf(reason: string): EngineError {
  try {
    const parsed = JSON.parse(reason) as Partial<WireFailure>;
    if (typeof parsed.code === 'string' && typeof parsed.message === 'string') {
      const code: EngineErrorCode = ENGINE_CODES.includes(parsed.code) ? (parsed.code as EngineErrorCode) : 'internal';
      return new EngineError(code, parsed.message);
    }
  } catch {
    // not one of ours: BullMQ's own reasons
  }
  if (/stalled/i.test(reason)) return new EngineError('worker_crashed', `engine workers were lost while drawing this job (${reason})`);
  return new EngineError('internal', reason);
}

async function decodeResult(wire: WireResult): Promise<GenerateResult> {
  const images = await Promise.all(
    wire.images.map(async (image) => {
      const rgb = await sharp(Buffer.from(image.png, 'base64')).removeAlpha().raw().toBuffer();
      return {
        rgb: new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength),
        width: image.width,
        height: image.height,
        seed: image.seed,
        infoText: image.infoText,
      };
    }),
  );
  return {
    images,
    model: wire.model,
    provider: wire.provider as ExecutionProviderName,
    truncation: wire.truncation,
    ...(wire.loraHashes ? { loraHashes: wire.loraHashes } : {}),
    timing: wire.timing,
  };
}

export class RedisDispatcher implements Drawer {
  private readonly queues = new Map<string, ModelQueue>();
  private readonly keys: ReturnType<typeof keys>;
  private readonly onProgress = new Map<string, (p: StepProgress) => void>();
  private readonly onStage = new Map<string, (s: ModelStage) => void>();
  /** Per BullMQ id: when the job was handed over and when a worker started it (bench figures). */
  readonly timings = new Map<string, { added: number; started?: number; finished?: number }>();
  /** Job id → the worker choose() reserved for it, until the job ends here. */
  private readonly reserved = new Map<string, string>();
  readonly routing: RoutingCounts = { loaded: 0, switched: 0 };
  /**
   * Worker → the load key of the job last routed to it, until its heartbeat lists that key.
   * Heartbeats are up to two seconds late (a beat a second, read a second); what the bot routed is
   * newer, and the routed worker is the one that takes the job (others leave it to it).
   */
  private readonly routedKey = new Map<string, string>();

  constructor(private readonly opts: DispatcherOptions) {
    this.keys = keys(opts.prefix);
  }

  /** The model's BullMQ queue and its events (a blocking reader of its own), made on first use. */
  private queueFor(model: string): ModelQueue {
    const known = this.queues.get(model);
    if (known) return known;
    const { opts } = this;
    const name = queueNameFor(model);
    const age = opts.resultTtlHours * 3600;
    const queue = new Queue<DrawPayload>(name, {
      connection: opts.producer,
      prefix: opts.prefix,
      streams: { events: { maxLen: EVENTS_MAX_LEN } },
      defaultJobOptions: { attempts: 1, removeOnComplete: { age }, removeOnFail: { age } },
    });
    const reader = opts.events.duplicate();
    reader.on('error', (err: Error) => opts.log.debug({ err: err.message }, 'queue Redis connection error'));
    const events = new QueueEvents(name, { connection: reader, prefix: opts.prefix });
    queue.on('error', (err) => opts.log.warn({ err: err.message, model }, 'queue connection error'));
    events.on('error', (err) => opts.log.warn({ err: err.message, model }, 'queue events connection error'));
    events.on('progress', ({ jobId, data }) => {
      if (!data || typeof data !== 'object') return;
      if ('modelStage' in data) this.onStage.get(jobId)?.((data as unknown as WireStage).modelStage);
      else this.onProgress.get(jobId)?.(fromWireProgress(data as unknown as WireProgress));
    });
    events.on('active', ({ jobId }) => {
      const t = this.timings.get(jobId);
      if (t && t.started === undefined) t.started = performance.now();
    });
    const made = { queue, events, reader };
    this.queues.set(model, made);
    return made;
  }

  /** The Drawer's routing: the waiting job a free worker with its model can start now. */
  choose<J extends Job>(candidates: J[]): J | undefined {
    const busy = new Set(this.reserved.values());
    const free = this.opts
      .workers()
      .filter((w) => !busy.has(w.id))
      .map((w) => {
        const routed = this.routedKey.get(w.id);
        if (routed === undefined) return w;
        const loaded = workerLoaded(w);
        if (loaded.includes(routed)) {
          this.routedKey.delete(w.id); // the heartbeats caught up
          return w;
        }
        // A worker of an earlier version holds one model: the routed one replaces it.
        return Array.isArray(w.loadedModels) ? { ...w, loadedModels: [...loaded, routed] } : { ...w, loaded: routed };
      });
    const picked = route(candidates, free, this.opts.preferWithin);
    if (!picked) return undefined;
    this.reserved.set(picked.job.id, picked.worker.id);
    const key = loadKeyOf(picked.job.spec);
    if (key !== undefined) this.routedKey.set(picked.worker.id, key);
    else this.routedKey.delete(picked.worker.id);
    if (picked.loaded) this.routing.loaded += 1;
    else this.routing.switched += 1;
    this.opts.log.debug({ jobId: picked.job.id, worker: picked.worker.id, model: picked.job.spec.model, loaded: picked.loaded }, 'job routed');
    return picked.job;
  }

  available(): boolean {
    return this.opts.producer.status === 'ready';
  }

  async ready(): Promise<void> {
    for (const { queue, events } of this.queues.values()) {
      await queue.waitUntilReady();
      await events.waitUntilReady();
    }
  }

  async draw(job: Job, request: GenerateRequest, options: GenerateOptions): Promise<GenerateResult> {
    try {
      return await this.drawRouted(job, request, options);
    } finally {
      this.reserved.delete(job.id);
    }
  }

  private async drawRouted(job: Job, request: GenerateRequest, options: GenerateOptions): Promise<GenerateResult> {
    const bullId = bullIdOf(job);
    if (!this.available()) throw new BackendUnavailableError('Redis is not connected');
    const { queue, events } = this.queueFor(request.model);
    try {
      await events.waitUntilReady();
    } catch (err) {
      throw new BackendUnavailableError(`could not listen to the workers: ${err instanceof Error ? err.message : String(err)}`);
    }
    let bullJob: BullJob<DrawPayload>;
    try {
      // The same id after a bot restart finds the attempt already handed over (or finished) and
      // waits for it again instead of drawing it twice.
      const worker = this.reserved.get(job.id);
      bullJob = await queue.add(QUEUE_NAME, { jobId: job.id, request: toWireRequest(request), ...(worker ? { worker } : {}) }, { jobId: bullId });
    } catch (err) {
      throw new BackendUnavailableError(`could not hand the job to Redis: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (!this.timings.has(bullId)) this.timings.set(bullId, { added: performance.now() });
    if (options.onStep) this.onProgress.set(bullId, options.onStep);
    if (options.onStage) this.onStage.set(bullId, options.onStage);
    let detach: (reason: EngineError) => void = () => undefined;
    const detached = new Promise<never>((_, reject) => {
      detach = reject;
    });
    const onAbort = () => {
      const reason: unknown = options.signal?.reason;
      if (reason instanceof Error && reason.message === SHUTDOWN_REASON) {
        // The bot is stopping: the worker goes on drawing; the next start waits for it again.
        detach(new EngineError('cancelled', SHUTDOWN_REASON));
        return;
      }
      this.cancelRemote(bullJob, bullId)
        .then((removed) => {
          if (removed) detach(new EngineError('cancelled', 'cancelled'));
        })
        .catch((err: unknown) => this.opts.log.warn({ err, jobId: job.id }, 'could not pass a cancel to the workers'));
    };
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      let done: unknown;
      try {
        done = await Promise.race([bullJob.waitUntilFinished(events), detached]);
      } catch (err) {
        if (err instanceof EngineError) throw err;
        throw failureOf(err instanceof Error ? err.message : String(err));
      }
      const t = this.timings.get(bullId);
      if (t) t.finished = performance.now();
      void done;
      const raw = await this.opts.producer.get(this.keys.result(bullId));
      if (!raw) throw new EngineError('worker_crashed', 'the result pictures expired in Redis before the bot could save them');
      return await decodeResult(JSON.parse(raw) as WireResult);
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      this.onProgress.delete(bullId);
      this.onStage.delete(bullId);
    }
  }

  /** Tells the workers; returns true when the job was still waiting and is gone. */
  private async cancelRemote(bullJob: BullJob<DrawPayload>, bullId: string): Promise<boolean> {
    await this.opts.producer.set(this.keys.cancelled(bullId), '1', 'EX', 3600);
    await this.opts.producer.publish(this.keys.cancelChannel, bullId);
    try {
      const state = await bullJob.getState();
      if (state === 'waiting' || state === 'prioritized' || state === 'delayed') {
        await bullJob.remove();
        return true;
      }
    } catch {
      // a worker took it meanwhile: it sees the cancel within a step
    }
    return false;
  }

  async release(job: Job): Promise<void> {
    const bullId = bullIdOf(job);
    this.timings.delete(bullId);
    await this.opts.producer.del(this.keys.result(bullId));
    await this.queueFor(job.spec.model).queue.remove(bullId).catch(() => 0);
  }

  async close(): Promise<void> {
    for (const { queue, events, reader } of this.queues.values()) {
      await events.close().catch(() => undefined);
      await queue.close().catch(() => undefined);
      reader.disconnect();
    }
  }
}
