// The whole flow with nothing faked: a member's text → the one parser → the fair queue →
// the real engine (worker thread, onnxruntime, tiny fixture model) → rendered PNGs and grid
// → seeds and button payloads that decode back to actions on the stored job.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAction, encodeAction } from '../commands/codec.js';
import { runCommand } from '../commands/index.js';
import { resultView } from '../commands/result.js';
import type { CommandRequest } from '../commands/types.js';
import type { Job } from '../src/jobs/types.js';
import { createHarness, waitForJobEvent as waitFor, type Harness } from './helpers/harness.js';

const member = { platform: 'cli' as const, userId: 'u1', name: 'Ada', roles: [] };
const target = { platform: 'cli' as const, chatId: 'c1', handle: {} };

async function imagine(h: Harness, text: string): Promise<Job> {
  const req: CommandRequest = { command: 'imagine', requester: member, target, via: 'text', text };
  const reply = await runCommand(req, h.commands);
  expect(reply.ok, reply.text).toBe(true);
  expect(reply.queued).toBeDefined();
  const queued = reply.queued!;
  const done = waitFor(h, queued.job.id, 'done');
  const failed = waitFor(h, queued.job.id, 'failed').then((e) => {
    throw new Error(`job failed: ${e.type === 'failed' ? e.reason : ''}`);
  });
  await Promise.race([done, failed]);
  const job = await h.jobs.get(queued.job.id);
  expect(job?.status).toBe('done');
  return job!;
}

describe('whole flow: request → parser → queue → real engine → render', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('draws four pictures with consecutive seeds, a 2×2 grid, and parameters in every PNG', async () => {
    const job = await imagine(h, 'a red fox in the snow --seed 1234 --steps 3 --n 4 --no blurry');
    expect(job.spec.seed).toBe(1234);
    expect(job.spec.negativePrompt).toBe('blurry');
    const images = job.result!.images;
    expect(images.map((i) => i.seed)).toEqual([1234, 1235, 1236, 1237]);

    for (const image of images) {
      const png = await readFile(h.jobs.filePath(image.file));
      const meta = await sharp(png).metadata();
      expect(meta.format).toBe('png');
      expect([meta.width, meta.height]).toEqual([job.spec.width, job.spec.height]);
      const params = meta.comments?.find((c) => c.keyword === 'parameters')?.text ?? '';
      expect(params).toContain('a red fox in the snow');
      expect(params).toContain('Negative prompt: blurry');
      expect(params).toContain(`Seed: ${image.seed}`);
      expect(params).toContain(`Size: ${job.spec.width}x${job.spec.height}`);
    }

    const grid = await sharp(await readFile(h.jobs.filePath(job.result!.grid!))).metadata();
    expect(grid.width).toBeGreaterThanOrEqual(job.spec.width * 2);
    expect(grid.height).toBeGreaterThanOrEqual(job.spec.height * 2);
  });

  it('gives buttons whose payloads decode to actions on the stored job, and reroll keeps the spec', async () => {
    const job = await imagine(h, 'a lighthouse at dusk --seed 7 --n 2 --steps 3');
    const view = resultView(job, h.config);
    const actions = view.buttons.flat().map((b) => b.action);
    expect(actions.some((a) => a.action === 'upscale' && a.index === 1)).toBe(true);
    expect(actions.some((a) => a.action === 'vary' && a.index === 0)).toBe(true);
    for (const action of actions) {
      const payload = encodeAction(action);
      expect(Buffer.byteLength(payload)).toBeLessThanOrEqual(64);
      expect(decodeAction(payload)).toEqual(action);
      expect((await h.jobs.get(action.jobId))?.id).toBe(job.id);
    }
    const reroll = await runCommand(
      { command: 'reroll', requester: member, target, via: 'button', action: { action: 'reroll', jobId: job.id } },
      h.commands,
    );
    expect(reroll.ok, reroll.text).toBe(true);
    const again = reroll.queued!.job;
    expect(again.spec.prompt).toBe(job.spec.prompt);
    expect(again.spec.steps).toBe(job.spec.steps);
    expect(again.spec.seed).not.toBe(job.spec.seed);
  });

  it('same seed, same picture: two runs give byte-identical pixels', async () => {
    const a = await imagine(h, 'a teapot --seed 99 --n 1 --steps 3');
    const b = await imagine(h, 'a teapot --seed 99 --n 1 --steps 3');
    const pixels = async (job: Job) =>
      sharp(await readFile(h.jobs.filePath(job.result!.images[0]!.file))).raw().toBuffer();
    expect(Buffer.compare(await pixels(a), await pixels(b))).toBe(0);
  });
});
