// The noise helper thread (see engine/noise-ahead.ts): draws each job's blocks into the shared
// ring as soon as a slot is free, one job at a time in arrival order.
import { parentPort } from 'node:worker_threads';
import { NOISE_RING_SLOTS, PRODUCED, RELEASED, STOP, type NoiseJob } from './noise-ahead.js';
import { TorchCpuGenerator } from './rng.js';

/** How often a producer waiting for a free slot looks at the stop flag anyway. */
const RECHECK_MS = 1000;

function draw(job: NoiseJob): void {
  const control = new Int32Array(job.control);
  const ring = new Float32Array(job.ring);
  const generators = job.generators.map((s) => TorchCpuGenerator.fromSnapshot(s));
  const { blockSize } = job;
  const perBlock = generators.length * blockSize;
  for (let b = 0; b < job.blocks; b++) {
    for (;;) {
      if (Atomics.load(control, STOP)) return;
      const released = Atomics.load(control, RELEASED);
      if (b < released + NOISE_RING_SLOTS) break;
      Atomics.wait(control, RELEASED, released, RECHECK_MS);
    }
    const base = (b % NOISE_RING_SLOTS) * perBlock;
    for (let j = 0; j < generators.length; j++) {
      generators[j]!.randn(blockSize, ring.subarray(base + j * blockSize, base + (j + 1) * blockSize));
    }
    Atomics.store(control, PRODUCED, b + 1);
    Atomics.notify(control, PRODUCED);
  }
}

parentPort?.on('message', (job: NoiseJob) => draw(job));
