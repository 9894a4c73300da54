// The bundled demo model (assets/models/demo, trained by train/demo/) through the whole flow: a
// fresh clone with no models/ folder draws with it, says so, and what it draws depends on the
// prompt the way it learned ("red apple" red, "green apple" green).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import type { CommandRequest } from '../commands/types.js';
import { DEMO_MODEL_NOTICE, DEMO_MODELS_DIR, scanModels } from '../engine/registry.js';
import type { Job } from '../src/jobs/types.js';
import { redOverGreen, rgbOf } from './helpers/demo-model.js';
import { createHarness, waitForJobEvent, type Harness } from './helpers/harness.js';

const member = { platform: 'cli' as const, userId: 'u1', name: 'Ada', roles: [] };
const target = { platform: 'cli' as const, chatId: 'c1', handle: {} };
/** The model's own defaults (the harness's 3 Euler steps are for the oracle fixture). */
const DRAW = { steps: 20, sampler: 'DPM++ 2M Karras' as const, guidance: 7 };
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

async function imagine(h: Harness, text: string): Promise<Job> {
  const req: CommandRequest = { command: 'imagine', requester: member, target, via: 'text', text };
  const reply = await runCommand(req, h.commands);
  expect(reply.ok, reply.text).toBe(true);
  const id = reply.queued!.job.id;
  const failed = waitForJobEvent(h, id, 'failed').then((e) => {
    throw new Error(`job failed: ${e.type === 'failed' ? e.reason : ''}`);
  });
  await Promise.race([waitForJobEvent(h, id, 'done'), failed]);
  return (await h.jobs.get(id))!;
}

/** redOverGreen of each picture of a job, in seed order. */
async function rednessOf(h: Harness, job: Job): Promise<number[]> {
  return Promise.all(job.result!.images.map(async (image) => redOverGreen(await rgbOf(await readFile(h.jobs.filePath(image.file))))));
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('demo model on a fresh clone (no models/ folder)', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({ withoutModels: true, config: { defaults: DRAW } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('offers the bundled demo model and says so once', () => {
    expect(h.models.map((m) => m.name)).toEqual(['demo']);
    expect(h.logLines.filter((line) => line.includes(DEMO_MODEL_NOTICE))).toHaveLength(1);
    expect(h.models[0]).toMatchObject({ nativeWidth: 64, nativeHeight: 64, family: 'sd1', hasVaeEncoder: true });
  });

  it('draws a 2×2 grid of 64×64 pictures with it', async () => {
    const job = await imagine(h, 'red apple --seed 5');
    expect(job.status).toBe('done');
    expect(job.result!.model).toBe('demo');
    expect(job.result!.images).toHaveLength(4);
    for (const image of job.result!.images) expect([image.width, image.height]).toEqual([64, 64]);
    const grid = await sharp(await readFile(h.jobs.filePath(job.result!.grid!))).metadata();
    expect(grid.width).toBeGreaterThanOrEqual(128);
    expect(grid.height).toBeGreaterThanOrEqual(128);
  });

  it('draws what the prompt names: "red apple" redder than "green apple" from the same seeds', async () => {
    const red = await rednessOf(h, await imagine(h, 'red apple --seed 100'));
    const green = await rednessOf(h, await imagine(h, 'green apple --seed 100'));
    const pairs = red.map((r, i) => `${r.toFixed(1)} vs ${green[i]!.toFixed(1)}`).join(', ');
    // Same starting noise, so only the words differ: most pairs, and the grids as a whole, must follow them.
    expect(red.filter((r, i) => r > green[i]!).length, pairs).toBeGreaterThanOrEqual(3);
    expect(mean(red), pairs).toBeGreaterThan(0);
    expect(mean(green), pairs).toBeLessThan(0);
  });
});

describe('demo model fallback', () => {
  it('is offered only when no other model is usable, with the notice', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'demo-empty-'));
    try {
      const none = await scanModels(path.join(empty, 'missing'), { fallbackDir: DEMO_MODELS_DIR });
      expect(none.models.map((m) => m.name)).toEqual(['demo']);
      expect(none.notice).toBe(DEMO_MODEL_NOTICE);
      // The missing folder is still reported, so an admin learns where models were looked for.
      expect(none.problems[0]?.reason).toContain('does not exist');
      expect(await scanModels(empty)).toEqual({ models: [], problems: [] });
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('npm run imagine without --model draws with it and prints the notice once', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'demo-cli-'));
    try {
      const out = path.join(dir, 'apple.png');
      const run = await new Promise<{ code: number; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', path.join(repo, 'engine', 'cli.ts'), 'red apple', '--models-dir', path.join(dir, 'models'), '--seed', '3', '-o', out, '-q'],
          { cwd: repo, timeout: 60_000 },
          (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }),
        );
      });
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr.split(DEMO_MODEL_NOTICE)).toHaveLength(2);
      const meta = await sharp(await readFile(out)).metadata();
      expect([meta.width, meta.height]).toEqual([64, 64]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
