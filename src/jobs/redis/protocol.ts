/**
 * What the bot and the engine workers say to each other through Redis. Everything is JSON;
 * pixels travel as base64 (PNG for results, raw RGB for the small previews and init pictures).
 *
 * Keys, all under the configured prefix:
 * - BullMQ queues `<prefix>:draw@<model>:*` — one per model (see queueNameFor); one BullMQ job per
 *   drawing attempt, id `<jobId>.<attempts>`.
 * - `<prefix>:result:<bullId>` — the result pictures, written by the worker before it completes
 *   the BullMQ job, with a TTL (queue.redis.resultTtlHours); deleted by the bot once saved.
 * - `<prefix>:cancelled:<bullId>` — a member's cancel, for a worker that picks the job up later.
 * - channel `<prefix>:cancel` — a member's cancel, for the worker drawing the job now.
 * - `<prefix>:worker:<id>` — a worker's heartbeat (models, loaded models, current job, speed).
 */
import type { EngineErrorCode, GenerateRequest, ModelStage, StepProgress } from '../../../engine/types.js';
import type { WorkerStatus } from '../types.js';

export const QUEUE_NAME = 'draw';

/**
 * One BullMQ queue per model: only workers that have the model listen on it, so a job can only be
 * drawn by such a worker, and when one dies mid-job the others' stalled check puts the job back
 * in the same queue for another worker with the model.
 */
export function queueNameFor(model: string): string {
  return `${QUEUE_NAME}@${encodeURIComponent(model)}`;
}

export function keys(prefix: string) {
  return {
    result: (bullId: string) => `${prefix}:result:${bullId}`,
    cancelled: (bullId: string) => `${prefix}:cancelled:${bullId}`,
    cancelChannel: `${prefix}:cancel`,
    worker: (id: string) => `${prefix}:worker:${id}`,
    workerPattern: `${prefix}:worker:*`,
  };
}

/** The BullMQ id of one drawing attempt: a crash-retry is a new attempt, a bot restart is not. */
export function bullIdOf(job: { id: string; attempts: number }): string {
  return `${job.id}.${job.attempts}`;
}

export interface WireRequest extends Omit<GenerateRequest, 'init'> {
  init?: { rgb: string; width: number; height: number; strength: number };
}

export interface DrawPayload {
  jobId: string;
  request: WireRequest;
  /** The worker the bot routed this job to (it has the model loaded, or is the free one that has it). */
  worker?: string;
}

/** How long other workers leave a routed job to its worker before any of them may take it. */
export const ROUTED_FOR_MS = 2_000;

export interface WireProgress extends Omit<StepProgress, 'preview'> {
  preview?: { rgb: string; width: number; height: number };
}

/** Sent on the same progress channel before the first step: preparing or loading the model. */
export interface WireStage {
  modelStage: ModelStage;
}

export interface WireImage {
  png: string;
  width: number;
  height: number;
  seed: number;
  infoText: string;
}

export interface WireResult {
  images: WireImage[];
  model: string;
  provider: string;
  truncation: Record<string, unknown>;
  loraHashes?: Record<string, string>;
  timing: { totalMs: number; denoiseMs: number; stepsRun: number };
  worker: string;
}

/** How a worker ends a BullMQ job it could not draw: the engine's own error code survives. */
export interface WireFailure {
  code: EngineErrorCode | 'too_large';
  message: string;
}

export type WorkerBeat = WorkerStatus;

const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * A heartbeat as read back from Redis, or undefined for anything else under a worker key (a
 * half-written value, another program's key, a worker of a far older or newer shape): the bot
 * reads these every second, so one odd value must cost a missing worker, never the refresh loop.
 * Optional fields of the wrong type are dropped rather than the whole beat.
 */
export function decodeBeat(raw: string): WorkerBeat | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const b = v as Record<string, unknown>;
  if (typeof b.id !== 'string' || !isStringArray(b.models) || !isCount(b.at)) return undefined;
  const beat: WorkerBeat = {
    id: b.id,
    host: typeof b.host === 'string' ? b.host : '',
    models: b.models,
    done: isCount(b.done) ? b.done : 0,
    since: isCount(b.since) ? b.since : b.at,
    at: b.at,
  };
  if (typeof b.loaded === 'string') beat.loaded = b.loaded;
  if (isStringArray(b.loadedModels)) beat.loadedModels = loadedForBeat(b.loadedModels);
  if (typeof b.provider === 'string') beat.provider = b.provider;
  if (isCount(b.imagesPerMinute)) beat.imagesPerMinute = b.imagesPerMinute;
  const c = b.current as Record<string, unknown> | null | undefined;
  if (typeof c === 'object' && c !== null && typeof c.jobId === 'string' && isCount(c.step) && isCount(c.total)) {
    beat.current = { jobId: c.jobId, step: c.step, total: c.total };
  }
  return beat;
}

/** A heartbeat is read by the bot every second: it names at most this many loaded models… */
export const MAX_LOADED_REPORTED = 16;
/** …each at most this long (a key lists the LoRAs of a variant; a longer one is left out). */
export const MAX_LOADED_KEY_CHARS = 512;

/**
 * The loaded models a heartbeat carries (WorkerStatus.loadedModels): the engine's list, least
 * recently used first, keeping the most recently used when it is longer than the bound. A model
 * left out only loses its preference; the job still runs there.
 */
export function loadedForBeat(keys: readonly string[]): string[] {
  return keys.filter((key) => key.length <= MAX_LOADED_KEY_CHARS).slice(-MAX_LOADED_REPORTED);
}

function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

function fromBase64(text: string): Uint8Array {
  const b = Buffer.from(text, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

// Each encoding and its decoding side by side: the bot encodes requests, the worker progress.

export function toWireRequest(request: GenerateRequest): WireRequest {
  const { init, ...rest } = request;
  return init ? { ...rest, init: { rgb: toBase64(init.rgb), width: init.width, height: init.height, strength: init.strength } } : rest;
}

export function fromWireRequest(wire: WireRequest): GenerateRequest {
  const { init, ...rest } = wire;
  return init ? { ...rest, init: { ...init, rgb: fromBase64(init.rgb) } } : rest;
}

export function toWireProgress(p: StepProgress): WireProgress {
  const { preview, ...rest } = p;
  return preview ? { ...rest, preview: { rgb: toBase64(preview.rgb), width: preview.width, height: preview.height } } : rest;
}

export function fromWireProgress(data: WireProgress): StepProgress {
  const { preview, ...rest } = data;
  return preview ? { ...rest, preview: { rgb: fromBase64(preview.rgb), width: preview.width, height: preview.height } } : rest;
}
