// Euler a needs fresh torch-exact noise on every step: about 1 ms per 16,384 values, mostly
// log/sin/cos, and 4× that for a 4-picture GPU batch. onnxruntime-node's session.run blocks the
// thread that calls it, so nothing on the pipeline's thread can draw while the UNet runs. A
// helper thread (engine/noise-worker.ts) therefore continues each picture's generator from a
// snapshot and writes the blocks ahead into a small shared ring; a step only reads its block, and
// waits only if the helper fell behind. Same generators, same order: the same numbers as drawing
// them here, which the fallback (drawing here after all) relies on too.
import type { Worker } from 'node:worker_threads';
import { TorchCpuGenerator, type TorchGeneratorState } from './rng.js';
import { startEngineThread } from './thread.js';
import type { EngineLog } from './types.js';

/** Blocks in the ring: the one a step reads, plus how far the helper may draw ahead (slack for
 * when the helper is briefly descheduled; 8 blocks of a 4-picture 512² batch are 2 MB). */
export const NOISE_RING_SLOTS = 8;
/** Control words in the shared Int32Array. */
export const PRODUCED = 0;
export const RELEASED = 1;
export const STOP = 2;
const CONTROL_WORDS = 3;
/** A helper that has not delivered a block in this long is given up on (its stream is redrawn here). */
const STALL_MS = 10_000;

/** What the pipeline's thread sends the helper for one UNet batch. */
export interface NoiseJob {
  control: SharedArrayBuffer;
  ring: SharedArrayBuffer;
  generators: TorchGeneratorState[];
  blockSize: number;
  blocks: number;
}

/** Fresh unit noise for a UNet batch: each call, every picture's next block, in batch order. */
export interface NoiseStream {
  /** The next block; valid until the next call (or close()). */
  next(): Float32Array;
  close(): void;
  /** Whether the blocks come from the helper thread (false: drawn on the calling thread). */
  readonly ahead: boolean;
  /** Milliseconds next() spent waiting for the helper so far (the benchmark reports it). */
  readonly waitedMs: number;
}

/** Draws on the calling thread, into one reused buffer. */
export function drawHere(generators: TorchCpuGenerator[], blockSize: number): NoiseStream {
  const out = new Float32Array(generators.length * blockSize);
  return {
    next() {
      for (let j = 0; j < generators.length; j++) generators[j]!.randn(blockSize, out.subarray(j * blockSize, (j + 1) * blockSize));
      return out;
    },
    close() {},
    ahead: false,
    waitedMs: 0,
  };
}

export class NoiseAhead {
  private worker: Worker | undefined;
  private unusable = false;

  constructor(
    private readonly log?: EngineLog,
    /** Tests: how long a step waits for a block before drawing the stream itself. */
    private readonly stallMs = STALL_MS,
  ) {}

  /** Starts the helper now (e.g. during warm-up) so the first job does not wait for it. */
  start(): void {
    if (this.worker || this.unusable) return;
    try {
      const worker = startEngineThread('noise-worker', undefined);
      worker.unref();
      worker.on('error', (err: Error) => this.giveUp(`the noise thread failed: ${err.message}`));
      worker.on('exit', () => {
        if (this.worker === worker) this.worker = undefined;
      });
      this.worker = worker;
    } catch (err) {
      this.giveUp(`the noise thread could not start: ${(err as Error).message}`);
    }
  }

  /**
   * A stream of `blocks` blocks continuing `generators`. The generators themselves are left where
   * they are (the helper works on snapshots), so they must not be drawn from while it runs.
   */
  stream(generators: TorchCpuGenerator[], blockSize: number, blocks: number): NoiseStream {
    if (blocks === 0) return drawHere(generators, blockSize);
    this.start();
    const worker = this.worker;
    if (!worker) return drawHere(generators, blockSize);
    const perBlock = generators.length * blockSize;
    const job: NoiseJob = {
      control: new SharedArrayBuffer(CONTROL_WORDS * Int32Array.BYTES_PER_ELEMENT),
      ring: new SharedArrayBuffer(NOISE_RING_SLOTS * perBlock * Float32Array.BYTES_PER_ELEMENT),
      generators: generators.map((g) => g.snapshot()),
      blockSize,
      blocks,
    };
    worker.postMessage(job);
    const control = new Int32Array(job.control);
    const ring = new Float32Array(job.ring);
    let taken = 0;
    let waitedMs = 0;
    let fallback: NoiseStream | undefined;
    const stop = (): void => {
      Atomics.store(control, STOP, 1);
      Atomics.notify(control, RELEASED);
    };
    return {
      next: () => {
        if (fallback) return fallback.next();
        // Blocks before this one are read: the helper may overwrite their slots.
        Atomics.store(control, RELEASED, taken);
        Atomics.notify(control, RELEASED);
        const waitStart = performance.now();
        const deadline = waitStart + this.stallMs;
        for (;;) {
          const produced = Atomics.load(control, PRODUCED);
          if (produced > taken) break;
          const left = deadline - performance.now();
          if (left <= 0 || Atomics.wait(control, PRODUCED, produced, left) === 'timed-out') {
            stop();
            this.giveUp(`the noise thread delivered no noise for ${this.stallMs} ms; drawing it on the engine thread`);
            // Replay the blocks already used, so the stream continues exactly where it was.
            fallback = drawHere(generators, blockSize);
            for (let b = 0; b < taken; b++) fallback.next();
            taken++;
            return fallback.next();
          }
        }
        waitedMs += performance.now() - waitStart;
        const slot = taken % NOISE_RING_SLOTS;
        taken++;
        return ring.subarray(slot * perBlock, (slot + 1) * perBlock);
      },
      close: stop,
      get ahead() {
        return fallback === undefined;
      },
      get waitedMs() {
        return waitedMs;
      },
    };
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
  }

  private giveUp(reason: string): void {
    if (this.unusable) return;
    this.unusable = true;
    this.log?.warn({ reason }, 'noise for ancestral samplers is drawn on the engine thread from now on');
    const worker = this.worker;
    this.worker = undefined;
    void worker?.terminate();
  }
}
