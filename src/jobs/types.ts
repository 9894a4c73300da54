import type { PromptTruncation, SamplerName } from '../../engine/types.js';

/**
 * What to draw. Built only by the parser (src/jobs/parse.ts), which validates and clamps it
 * against the configured limits, or derived from a stored spec by reroll/vary/upscale.
 */
export interface JobSpec {
  prompt: string;
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  sampler: SamplerName;
  /** uint32; image i uses seed + i. */
  seed: number;
  count: number;
  model: string;
  variation?: { seed: number; strength: number };
  /** img2img from one stored picture of an earlier job (upscale). */
  init?: {
    jobId: string;
    index: number;
    strength: number;
    /**
     * An uploaded picture (the web studio), relative to the data directory, instead of the
     * earlier job's picture; jobId and index are then unused. Cropped to the job's aspect.
     */
    file?: string;
  };
}

export type Platform = 'discord' | 'telegram' | 'web' | 'cli';

/** Who asked. Roles are platform role ids (Discord) — used for tiers and admin checks. */
export interface Requester {
  platform: Platform;
  userId: string;
  name: string;
  roles: string[];
}

/**
 * Where to answer. `handle` is opaque to everything but the adapter that wrote it
 * (Discord: interaction id/token/application id; Telegram: chat id and status message id).
 */
export interface ReplyTarget {
  platform: Platform;
  chatId: string;
  guildId?: string;
  handle: Record<string, string | number | boolean | null>;
}

export type JobKind = 'imagine' | 'reroll' | 'vary' | 'upscale';

/**
 * queued → running → done → delivered, or → failed / cancelled.
 * `done` means the images are on disk and the job waits for its adapter to deliver them;
 * after a restart, `done` jobs are delivered again, never rendered again.
 */
export type JobStatus = 'queued' | 'running' | 'done' | 'delivered' | 'failed' | 'cancelled';

export interface JobImage {
  /** Path relative to the data directory. */
  file: string;
  seed: number;
  width: number;
  height: number;
  infoText: string;
}

export interface JobResult {
  images: JobImage[];
  /** Path relative to the data directory; present when there is more than one image. */
  grid?: string;
  model: string;
  provider: string;
  durationMs: number;
  truncation: { prompt?: PromptTruncation; negativePrompt?: PromptTruncation };
}

export interface Job {
  /** Short, URL- and button-safe id ([0-9a-z], 8 chars). */
  id: string;
  /** Monotonic submission order; recovery resumes in this order. */
  seq: number;
  kind: JobKind;
  parentId?: string;
  spec: JobSpec;
  requester: Requester;
  target: ReplyTarget;
  /** Priority tier from config (0 = default). */
  tier: number;
  status: JobStatus;
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
  /**
   * Engine-worker crashes while drawing this job (bounded by queue.maxAttempts). A stop, restart
   * or kill of the bot process is not the request's fault and never counts here.
   */
  attempts: number;
  /**
   * Times the bot process died (was killed, lost power, or crashed natively) while this job was
   * running, found at the next start (bounded by queue.maxInterruptions). Absent means 0.
   */
  interruptions?: number;
  /** Messages for the member about how the request was read (clamps, defaults). */
  notes: string[];
  result?: JobResult;
  /** User-facing failure reason. */
  error?: string;
  cancelledBy?: string;
  delivery?: { at: number; ref?: Record<string, string>; undeliverable?: string };
  /** When its owner (or an admin) deleted the result with 🗑: galleries leave it out; the record stays until retention. */
  deletedAt?: number;
  /** Platform idempotency key (a Telegram update, a Discord interaction) to drop re-deliveries. */
  idempotencyKey?: string;
}

export interface QueuePosition {
  /** 1-based; 0 means running. */
  position: number;
  etaSeconds: number;
  /** The ETA rests on a first estimate (a model with no finished job yet), not on measurements. */
  approximate?: boolean;
}

export type JobEvent =
  | { type: 'queued'; job: Job; position: number; etaSeconds: number; approximate?: boolean }
  /** Position or ETA of a waiting job changed. */
  | { type: 'moved'; job: Job; position: number; etaSeconds: number; approximate?: boolean }
  /**
   * The job is waiting again: recovered from the store after a restart; or (cause
   * 'engine-crash') put back after the engine worker crashed while drawing it; or (cause
   * 'shutdown') put back because the bot is stopping, to be drawn after the restart.
   */
  | {
      type: 'resumed';
      job: Job;
      position: number;
      etaSeconds: number;
      approximate?: boolean;
      cause?: 'engine-crash' | 'shutdown';
    }
  | { type: 'started'; job: Job }
  /**
   * Before the first step: the model is being prepared (a checkpoint's first use, `fraction`
   * 0..1; `loras` when a LoRA variant is built) or its sessions are being created.
   */
  | { type: 'stage'; job: Job; stage: 'preparing' | 'loading'; model: string; loras?: string[]; fraction?: number }
  | {
      type: 'progress';
      job: Job;
      /** Step `step` of the job's own `total` steps (what the member asked for, img2img's share). */
      step: number;
      total: number;
      /** 1-based; present when the pictures are drawn in batches one after another. */
      pictures?: PictureRange;
      preview?: { png: Buffer; width: number; height: number };
    }
  | { type: 'done'; job: Job }
  | { type: 'failed'; job: Job; reason: string }
  | { type: 'cancelled'; job: Job; by: string }
  /** A finished job cannot be delivered (chat gone, bot blocked, permission refused): never retried. */
  | { type: 'undeliverable'; job: Job; reason: string };

export type JobEventListener = (event: JobEvent) => void;

/** Per-member defaults set with /settings; every field optional. */
export interface MemberSettings {
  aspect?: string;
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  sampler?: SamplerName;
  images?: number;
  model?: string;
}

// ---- persistence (implemented in src/store/, the only module that touches keyv) ----

export interface JobRepo {
  /** Durable write; rejects when the store cannot write (a job is never acknowledged unsaved). */
  put(job: Job): Promise<void>;
  get(id: string): Promise<Job | undefined>;
  /** Jobs that are queued, running or done-but-undelivered, in seq order. */
  active(): Promise<Job[]>;
  byIdempotencyKey(key: string): Promise<Job | undefined>;
  /** The job whose result was delivered as this message (indexed when delivery.ref has chatId + messageId). */
  byMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined>;
  nextSeq(): Promise<number>;
  /** Finished jobs (delivered, failed, cancelled) whose finishedAt is before `before`. */
  finishedBefore(before: number): Promise<Job[]>;
  /**
   * The newest finished jobs whose finishedAt is before `before`, newest first, at least `limit`
   * of them when there are (whole hours are read, so a few more may come). For galleries.
   */
  recentFinished(limit: number, before: number): Promise<Job[]>;
  delete(id: string): Promise<void>;
}

export interface SettingsRepo {
  get(platform: Platform, userId: string): Promise<MemberSettings>;
  set(platform: Platform, userId: string, settings: MemberSettings): Promise<void>;
}

export interface Store {
  jobs: JobRepo;
  settings: SettingsRepo;
  close(): Promise<void>;
}

// ---- the job service (src/jobs/service.ts): queue + store + engine worker + rendering ----

export interface SubmitInput {
  kind: JobKind;
  spec: JobSpec;
  requester: Requester;
  target: ReplyTarget;
  parentId?: string;
  notes: string[];
  idempotencyKey?: string;
}

export type SubmitOutcome =
  | { ok: true; job: Job; position: number; etaSeconds: number; approximate?: boolean; duplicate: boolean }
  | { ok: false; reason: string };

export type CancelOutcome = { ok: true; job: Job; wasRunning: boolean } | { ok: false; reason: string };

/** Pictures first…last of a job's count (1-based). */
export interface PictureRange {
  first: number;
  last: number;
  count: number;
}

export interface QueueSnapshot {
  /** step/total/pictures as in the `progress` event. */
  running?: { job: Job; step: number; total: number; pictures?: PictureRange };
  /** Other jobs drawn at the same time, by other engine workers (the Redis backend). */
  alsoRunning?: { job: Job; step: number; total: number; pictures?: PictureRange }[];
  waiting: ({ job: Job } & QueuePosition)[];
}

/** An engine worker as the Redis backend sees it (its heartbeat). */
export interface WorkerStatus {
  id: string;
  host: string;
  /** Models this worker's engine can load. */
  models: string[];
  /** The model it drew last. Workers of earlier versions report only this; the bot reads loadedModels when present. */
  loaded?: string;
  /**
   * What its engine holds loaded, by load key (engine/job-loras.ts loadKey), least recently used
   * first: a job with one of these keys starts there without a switch (seconds to minutes).
   * Bounded (see protocol.ts loadedForBeat).
   */
  loadedModels?: string[];
  provider?: string;
  current?: { jobId: string; step: number; total: number };
  /** Jobs drawn since it started. */
  done: number;
  /** Pictures per minute over its recent jobs. */
  imagesPerMinute?: number;
  since: number;
  at: number;
}

export interface JobService {
  submit(input: SubmitInput): Promise<SubmitOutcome>;
  /** `asAdmin` lets an admin cancel any job; otherwise only the owner's own. */
  cancel(jobId: string, by: Requester, asAdmin: boolean): Promise<CancelOutcome>;
  get(jobId: string): Promise<Job | undefined>;
  position(jobId: string): QueuePosition | undefined;
  snapshot(): QueueSnapshot;
  on(listener: JobEventListener): () => void;
  /** ref: { chatId, messageId } of the result message, so reactions on it can find the job after a restart. */
  markDelivered(jobId: string, ref?: Record<string, string>): Promise<void>;
  /** The job whose result is this message (for 🔁 reactions), across restarts. */
  findByMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined>;
  /** Delivery is impossible (member blocked the bot, channel gone): never retried. */
  markUndeliverable(jobId: string, reason: string): Promise<void>;
  /** The result was deleted with 🗑 (its messages are the adapter's to remove): hide it from galleries. */
  markDeleted(jobId: string): Promise<void>;
  /** Jobs of this platform that are done but not delivered (after a restart, or a failed upload). */
  pendingDeliveries(platform: Platform): Promise<Job[]>;
  /** Absolute path of a stored file (a JobImage.file or JobResult.grid). */
  filePath(relative: string): string;
  /** Recover queued/running jobs from the store, then start feeding the engine. */
  start(): Promise<void>;
  /** Stop intake; let the running job finish within `graceMs`, else put it back as queued. */
  stop(graceMs: number): Promise<void>;
  /** Remote engine workers (the Redis backend); absent with the local engine. */
  workers?(): WorkerStatus[];
}
