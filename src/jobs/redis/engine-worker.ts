/**
 * A remote engine worker: engine/ plus this thin runner, which knows no chats. It takes one
 * BullMQ job at a time, draws it with the local engine, leaves the pictures in Redis (with a TTL)
 * for the bot, and reports progress; a cancel arrives on a pub/sub channel and aborts the engine
 * within a step. A heartbeat key tells the bot which models it has, which its engine holds loaded
 * (every one in the engine's LRU, by load key), what it is drawing and how fast it is.
 *
 * Lost workers: BullMQ's lock (queue.redis.lockSeconds) is renewed by this process's main thread;
 * the engine runs in a worker thread (onnxruntime's run() blocks its thread), so a long GPU job
 * never starves the renewal and is never taken for stalled. A killed worker stops renewing; after
 * the lock runs out, the stalled check moves its job back to waiting and another worker draws it.
 *
 * Models: the worker reads one BullMQ queue per model it has (queueNameFor), so it is only ever
 * handed jobs it can draw, and a job lost with a dead worker goes back to its model's queue for
 * another worker with that model. It draws one job at a time: while busy, its other queues are
 * paused, and a job that reaches it anyway (a race with the pause) goes straight back to waiting.
 * A job the bot routed to another worker (the one with the model loaded) is left to that worker
 * for ROUTED_FOR_MS; after that (say that worker died) any worker with the model may take it.
 */
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { WaitingError, Worker, type Job as BullJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { EngineError, type Engine } from '../../../engine/types.js';
import type { Config } from '../../config/schema.js';
import { loadKeyOf } from '../model-preference.js';
import { rgbToPng } from '../../render/index.js';
import {
  fromWireRequest,
  keys,
  loadedForBeat,
  queueNameFor,
  ROUTED_FOR_MS,
  toWireProgress,
  type DrawPayload,
  type WireFailure,
  type WireResult,
  type WireStage,
  type WorkerBeat,
} from './protocol.js';

const BEAT_MS = 1_000;
/** A heartbeat outlives a few missed beats, not a dead worker. */
const BEAT_TTL_S = 6;
/** Progress (and previews) to the bot at most this often, plus the last step (the adapters throttle edits further). */
const PROGRESS_MS = 250;
/** Speed is averaged over this many recent jobs. */
const SPEED_WINDOW = 10;
/** A queue whose job was left to the worker it was routed to is not read again for this long. */
const LEAVE_MS = 100;

export interface EngineWorkerOptions {
  config: Config;
  engine: Engine;
  log: Logger;
  /** BullMQ's connection (blocking reads). */
  connection: Redis;
  /** Pub/sub for cancels. */
  subscriber: Redis;
  id?: string;
}

export interface EngineWorkerHandle {
  id: string;
  /** Lets the job in hand finish, then stops. */
  close(): Promise<void>;
}

function fail(failure: WireFailure): Error {
  return new Error(JSON.stringify(failure));
}

export async function startEngineWorker(opts: EngineWorkerOptions): Promise<EngineWorkerHandle> {
  const { config, engine, log } = opts;
  const r = config.queue.redis;
  const k = keys(r.prefix);
  const id = opts.id ?? `${hostname()}-${process.pid}`;
  const maxBytes = r.maxResultMegabytes * 1024 * 1024;
  const models = (await engine.scanModels()).models.map((m) => m.name);
  const active = new Map<string, AbortController>();
  const recent: number[] = [];
  const beat: WorkerBeat = { id, host: hostname(), models, loadedModels: [], done: 0, since: Date.now(), at: Date.now() };
  /** An engine that keeps no list (one model at a time) holds what it drew last. */
  let drewLast: string | undefined;
  const loadedNow = (): string[] => loadedForBeat(engine.loadedModels?.() ?? (drewLast !== undefined ? [drewLast] : []));

  await opts.subscriber.subscribe(k.cancelChannel);
  opts.subscriber.on('message', (channel: string, bullId: string) => {
    if (channel !== k.cancelChannel) return;
    active.get(bullId)?.abort(new EngineError('cancelled', 'cancelled'));
  });

  const drawOne = async (job: BullJob<DrawPayload>): Promise<{ bytes: number }> => {
    const bullId = job.id ?? '';
    const jlog = log.child({ jobId: job.data.jobId, bullId });
    if (await opts.connection.exists(k.cancelled(bullId))) throw fail({ code: 'cancelled', message: 'cancelled' });
    const controller = new AbortController();
    active.set(bullId, controller);
    const request = fromWireRequest(job.data.request);
    beat.current = { jobId: job.data.jobId, step: 0, total: request.steps };
    const clock = performance.now();
    let lastProgress = 0;
    jlog.info({ attemptsMade: job.attemptsMade, model: request.model }, 'drawing');
    try {
      const result = await engine.generate(request, {
        signal: controller.signal,
        onStep: (p) => {
          beat.current = { jobId: job.data.jobId, step: p.step, total: p.total };
          const now = performance.now();
          if (now - lastProgress < PROGRESS_MS && p.step < p.total) return;
          lastProgress = now;
          job.updateProgress(toWireProgress(p) as unknown as object).catch((err: unknown) => jlog.debug({ err }, 'progress not sent'));
        },
        onStage: (modelStage) => {
          const wire: WireStage = { modelStage };
          job.updateProgress(wire as unknown as object).catch((err: unknown) => jlog.debug({ err }, 'stage not sent'));
        },
      });
      beat.loaded = result.model;
      drewLast = loadKeyOf(request);
      beat.provider = result.provider;
      const images = await Promise.all(
        result.images.map(async (image) => ({
          png: (await rgbToPng(image.rgb, image.width, image.height, { compressionLevel: 3 })).toString('base64'),
          width: image.width,
          height: image.height,
          seed: image.seed,
          infoText: image.infoText,
        })),
      );
      const wire: WireResult = { images, model: result.model, provider: result.provider, truncation: { ...result.truncation }, ...(result.loraHashes ? { loraHashes: result.loraHashes } : {}), timing: result.timing, worker: id };
      const text = JSON.stringify(wire);
      if (text.length > maxBytes) {
        throw fail({ code: 'too_large', message: `the pictures are larger than this club's limit (${r.maxResultMegabytes} MB)` });
      }
      // Written before the job completes: whoever sees "completed" finds the pictures.
      await opts.connection.set(k.result(bullId), text, 'EX', r.resultTtlHours * 3600);
      const seconds = (performance.now() - clock) / 1000;
      recent.push((images.length / seconds) * 60);
      if (recent.length > SPEED_WINDOW) recent.shift();
      beat.imagesPerMinute = recent.reduce((a, b) => a + b, 0) / recent.length;
      beat.done += 1;
      jlog.info({ seconds, images: images.length }, 'drawn');
      return { bytes: text.length };
    } catch (err) {
      if (err instanceof EngineError) {
        jlog.warn({ code: err.code, detail: err.message }, 'not drawn');
        throw fail({ code: err.code, message: err.message });
      }
      throw err;
    } finally {
      active.delete(bullId);
      delete beat.current;
    }
  };

  const listeners = new Map<string, Worker<DrawPayload, { bytes: number }>>();
  let busy = false;
  const leftUntil = new Map<string, number>();
  /** BullMQ id → when this worker first left the job to the worker it was routed to. */
  const firstSeen = new Map<string, number>();
  /** Reads a model's queue only while idle and not leaving its job to another worker. */
  const listen = (model: string, on: boolean) => {
    const listener = listeners.get(model);
    if (!listener || listener.closing) return;
    const move = on ? listener.resume() : listener.pause(true);
    Promise.resolve(move).catch((err: unknown) => log.debug({ err, model }, 'could not pause or resume a queue'));
  };
  const listenIdle = () => {
    const now = Date.now();
    for (const model of listeners.keys()) if ((leftUntil.get(model) ?? 0) <= now) listen(model, true);
  };

  const take = async (model: string, job: BullJob<DrawPayload>, token?: string): Promise<{ bytes: number }> => {
    const bullId = job.id ?? '';
    // Timed from when this worker first saw the job, not from its timestamp: the bot's clock is not ours.
    const now = Date.now();
    const seen = firstSeen.get(bullId) ?? now;
    const routedElsewhere = job.data.worker !== undefined && job.data.worker !== id && now - seen < ROUTED_FOR_MS;
    if (routedElsewhere) firstSeen.set(bullId, seen);
    else firstSeen.delete(bullId);
    for (const [other, at] of firstSeen) if (now - at > 10 * ROUTED_FOR_MS) firstSeen.delete(other); // taken by their worker long ago
    if (busy || routedElsewhere) {
      await job.moveToWait(token);
      if (!busy) {
        leftUntil.set(model, Date.now() + LEAVE_MS);
        listen(model, false);
        setTimeout(() => {
          if (!busy) listen(model, true);
        }, LEAVE_MS).unref();
      }
      throw new WaitingError();
    }
    busy = true;
    for (const other of listeners.keys()) if (other !== model) listen(other, false);
    try {
      return await drawOne(job);
    } finally {
      busy = false;
      listenIdle();
    }
  };

  for (const model of models) {
    const listener = new Worker<DrawPayload, { bytes: number }>(queueNameFor(model), (job, token) => take(model, job, token), {
      connection: opts.connection,
      prefix: r.prefix,
      concurrency: 1,
      lockDuration: r.lockSeconds * 1000,
      stalledInterval: r.stalledCheckSeconds * 1000,
      maxStalledCount: r.maxStalls,
    });
    listener.on('error', (err) => log.warn({ err: err.message, model }, 'worker connection error'));
    listeners.set(model, listener);
  }
  if (models.length === 0) log.warn('this worker found no models under models.dir: it will get no jobs');

  const sendBeat = async () => {
    beat.at = Date.now();
    beat.loadedModels = loadedNow(); // evictions happen between jobs too (the next job's load)
    await opts.connection.set(k.worker(id), JSON.stringify(beat), 'EX', BEAT_TTL_S);
  };
  await sendBeat();
  const timer = setInterval(() => {
    sendBeat().catch((err: unknown) => log.debug({ err }, 'heartbeat not sent'));
  }, BEAT_MS);
  timer.unref();
  log.info({ worker: id, models }, 'engine worker ready');

  return {
    id,
    close: async () => {
      clearInterval(timer);
      await Promise.all([...listeners.values()].map((listener) => listener.close()));
      await opts.connection.del(k.worker(id)).catch(() => 0);
      await opts.subscriber.unsubscribe(k.cancelChannel).catch(() => undefined);
    },
  };
}
