/**
 * queue.backend: "local" — the job service over the in-process engine worker; "redis" — the same
 * job service (same intake, fair schedule, delivery bookkeeping, recovery) whose runner hands
 * each job to a remote engine worker through BullMQ.
 */
import { openQueueConnection, redactRedisUrl, redisSettingsProblems, waitUntilReady } from '../store/queue-connection.js';
import type { Drawer } from './drawer.js';
import { RedisDispatcher } from './redis/dispatcher.js';
import { WorkerDirectory } from './redis/directory.js';
import { ComposedJobService, createJobService, type JobServiceDeps } from './service.js';
import type { SubmitInput, SubmitOutcome, WorkerStatus } from './types.js';

/** How long start-up waits for Redis before going on without it (it recovers by itself). */
const CONNECT_WAIT_MS = 5_000;
/**
 * A job for a model no live worker has waits for one (a worker restarting, a host rebooting);
 * after this long without any worker offering it, new requests for it are refused.
 */
export const MODEL_GONE_MS = 10 * 60_000;

export function modelGoneMessage(model: string, goneMs: number): string {
  const span = goneMs >= 60_000 ? `${Math.round(goneMs / 60_000)} minutes` : `${Math.round(goneMs / 1000)} seconds`;
  return `No drawing machine has the model “${model}” (none for ${span}). Pick another model with --model, or ask an admin to start a worker that has it.`;
}

/** The job service's own dependencies, less the drawer and slots the backend supplies. */
export interface BackendDeps extends Omit<JobServiceDeps, 'drawer' | 'slots'> {
  /** Model routing's preference window (routing.ts); bench:cluster sets 0 for its baseline. */
  preferWithin?: number;
}

export class RedisSettingsError extends Error {}

/** The job service with the Redis backend: workers() lists the engine workers. */
export class RedisJobService extends ComposedJobService {
  constructor(
    deps: BackendDeps & { drawer: Drawer },
    private readonly directory: WorkerDirectory,
    readonly dispatcher: RedisDispatcher,
  ) {
    super(deps);
  }

  /** A model no worker has had for MODEL_GONE_MS is refused; one missing for less waits for a worker. */
  override async submit(input: SubmitInput): Promise<SubmitOutcome> {
    const missing = this.directory.modelMissingFor(input.spec.model);
    if (missing !== undefined && missing >= MODEL_GONE_MS) {
      return { ok: false, reason: modelGoneMessage(input.spec.model, MODEL_GONE_MS) };
    }
    return super.submit(input);
  }

  workers(): WorkerStatus[] {
    return this.directory.workers();
  }

  /** Reads the heartbeats now (tests and tools; the bot polls them every second). */
  refreshWorkers(): Promise<void> {
    return this.directory.refresh();
  }
}

export async function createQueueBackend(deps: BackendDeps): Promise<ComposedJobService> {
  if (deps.config.queue.backend === 'local') return createJobService(deps);
  return createRedisJobService(deps);
}

export async function createRedisJobService(deps: BackendDeps): Promise<RedisJobService> {
  const { config, log } = deps;
  const r = config.queue.redis;
  const producer = openQueueConnection(r.url, 'producer');
  const events = openQueueConnection(r.url, 'subscriber');
  for (const conn of [producer, events]) conn.on('error', (err: Error) => log.debug({ err: err.message }, 'queue Redis connection error'));

  const checkSettings = async (atStart: boolean) => {
    const { fatal, warnings } = await redisSettingsProblems(producer);
    for (const w of warnings) log.warn(w);
    if (fatal.length === 0) return;
    if (atStart) {
      producer.disconnect();
      events.disconnect();
      throw new RedisSettingsError(`queue.redis.url (${redactRedisUrl(r.url)}): ${fatal.join(' ')}`);
    }
    for (const f of fatal) log.error(f);
  };
  let wasDown = false;
  producer.on('ready', () => {
    if (!wasDown) return;
    wasDown = false;
    log.info('the queue Redis is back');
    checkSettings(false).catch(() => undefined);
  });
  producer.on('close', () => {
    if (!wasDown) log.error({ url: redactRedisUrl(r.url) }, 'lost the queue Redis; members are told the drawing service is unavailable until it is back');
    wasDown = true;
  });

  try {
    await waitUntilReady(producer, r.url, CONNECT_WAIT_MS);
    await checkSettings(true);
  } catch (err) {
    if (err instanceof RedisSettingsError) throw err;
    // Not fatal: the bot answers what it can, members hear "unavailable", and it recovers by itself.
    log.error({ detail: err instanceof Error ? err.message : String(err) }, 'the queue Redis is not reachable yet');
    wasDown = true;
  }

  let service: RedisJobService | undefined;
  const directory = new WorkerDirectory(producer, r.prefix, log, (count) => service?.runner.setSlots(count), deps.now);
  const dispatcher = new RedisDispatcher({ prefix: r.prefix, resultTtlHours: r.resultTtlHours, producer, events, log, workers: () => directory.workers(), ...(deps.preferWithin !== undefined ? { preferWithin: deps.preferWithin } : {}) });
  const drawer: Drawer = {
    choose: (candidates) => dispatcher.choose(candidates),
    draw: (job, request, options) => dispatcher.draw(job, request, options),
    release: (job) => dispatcher.release(job),
    available: () => dispatcher.available(),
    close: async () => {
      directory.stop();
      await dispatcher.close();
      producer.disconnect();
      events.disconnect();
    },
  };
  service = new RedisJobService({ ...deps, drawer }, directory, dispatcher);
  await directory.refresh().catch(() => undefined);
  service.runner.setSlots(directory.workers().length);
  directory.start();
  return service;
}
