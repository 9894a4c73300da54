/**
 * The job service, composed from its parts: intake (submit, cancel), scheduling (the fair queue,
 * positions, ETAs), execution (the runner over an engine), delivery bookkeeping, recovery after a
 * restart and retention. Each part lives in its own module; this one wires them together behind
 * the JobService interface the adapters and commands use.
 */
import type { Logger } from 'pino';
import type { Engine } from '../../engine/types.js';
import type { Config } from '../config/schema.js';
import type { JobsContext } from './context.js';
import { DeliveryBook } from './delivery.js';
import { localDrawer, type Drawer } from './drawer.js';
import { EtaModel } from './eta.js';
import { JobEvents } from './events.js';
import { Intake } from './intake.js';
import { view } from './job-copies.js';
import { loadModelScales, recoverJobs } from './recovery.js';
import { ResultFiles } from './result-files.js';
import { Retention } from './retention.js';
import { Runner } from './runner.js';
import { Schedule } from './scheduling.js';
import type {
  CancelOutcome,
  Job,
  JobEventListener,
  JobService,
  Platform,
  QueuePosition,
  QueueSnapshot,
  Requester,
  Store,
  SubmitInput,
  SubmitOutcome,
} from './types.js';

export { withoutServerPaths } from './messages.js';

export interface JobServiceDeps {
  config: Config;
  store: Store;
  engine: Engine;
  log: Logger;
  /** Clock for timestamps, image folders and retention (tests inject one). */
  now?: () => number;
  /** What draws a job; the local engine when absent. */
  drawer?: Drawer;
  /** Jobs drawn at once (the local engine: 1; remote workers change it as they come and go). */
  slots?: number;
}

/** JobService plus hooks that main.ts does not need but tests and tools do. */
export interface JobServiceWithMaintenance extends JobService {
  /** Deletes finished jobs older than retention.days with their files; returns how many. */
  sweepExpired(): Promise<number>;
}

export function createJobService(deps: JobServiceDeps): ComposedJobService {
  return new ComposedJobService(deps);
}

export class ComposedJobService implements JobServiceWithMaintenance {
  readonly ctx: JobsContext;
  readonly runner: Runner;
  private readonly engine: Engine;
  private readonly drawer: Drawer;
  private readonly intake: Intake;
  private readonly delivery: DeliveryBook;
  private readonly retention: Retention;
  private started = false;

  constructor(deps: JobServiceDeps) {
    const { config, engine, log } = deps;
    this.engine = engine;
    const fixedPrior = config.queue.initialSecondsPerStep;
    const eta = new EtaModel({
      ...(fixedPrior !== undefined ? { fixedPrior } : {}),
      provider: () => engine.provider() ?? config.engine.providers[0] ?? 'cpu',
    });
    const events = new JobEvents(log);
    this.ctx = {
      config,
      store: deps.store,
      log,
      now: deps.now ?? Date.now,
      events,
      schedule: new Schedule(config, eta, events),
      files: new ResultFiles(config.dataDir),
    };
    this.drawer = deps.drawer ?? localDrawer(engine);
    this.runner = new Runner(this.ctx, this.drawer, deps.slots ?? 1);
    this.intake = new Intake(this.ctx, this.runner);
    this.delivery = new DeliveryBook(this.ctx);
    this.retention = new Retention(this.ctx);
  }

  on(listener: JobEventListener): () => void {
    return this.ctx.events.on(listener);
  }

  submit(input: SubmitInput): Promise<SubmitOutcome> {
    return this.intake.submit(input);
  }

  cancel(jobId: string, by: Requester, asAdmin: boolean): Promise<CancelOutcome> {
    return this.intake.cancel(jobId, by, asAdmin);
  }

  async get(jobId: string): Promise<Job | undefined> {
    const live = this.ctx.schedule.live.get(jobId);
    if (live) return view(live);
    return this.ctx.store.jobs.get(jobId);
  }

  position(jobId: string): QueuePosition | undefined {
    return this.ctx.schedule.position(jobId);
  }

  snapshot(): QueueSnapshot {
    return this.ctx.schedule.snapshot();
  }

  markDelivered(jobId: string, ref?: Record<string, string>): Promise<void> {
    return this.delivery.markDelivered(jobId, ref);
  }

  markUndeliverable(jobId: string, reason: string): Promise<void> {
    return this.delivery.markUndeliverable(jobId, reason);
  }

  markDeleted(jobId: string): Promise<void> {
    return this.delivery.markDeleted(jobId);
  }

  findByMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined> {
    return this.delivery.findByMessage(platform, chatId, messageId);
  }

  pendingDeliveries(platform: Platform): Promise<Job[]> {
    return this.delivery.pendingDeliveries(platform);
  }

  filePath(relative: string): string {
    return this.ctx.files.filePath(relative);
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await loadModelScales(this.ctx, this.engine);
    const resumed = await recoverJobs(this.ctx);
    for (let i = 0; i < resumed; i++) this.runner.kick();
    await this.retention.start();
    this.runner.start();
  }

  async stop(graceMs: number): Promise<void> {
    await this.runner.stop(graceMs, () => this.retention.stop());
    await this.drawer.close?.();
  }

  sweepExpired(): Promise<number> {
    return this.retention.sweep();
  }
}
