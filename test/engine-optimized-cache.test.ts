// The cache of onnxruntime-optimised graphs (engine/optimized-cache.ts): a second start loads the
// optimised graph and computes exactly what the first did; a changed model file, another
// onnxruntime version or a half-written entry is never reused.
import { readdir, mkdir, mkdtemp, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planOptimizedSession } from '../engine/optimized-cache.js';
import { createSession } from '../engine/providers.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

let root: string;
let unet: string;
const LEVEL = { provider: 'cpu', graphOptimizationLevel: 'all' };

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-optimized-cache-'));
  await writeTinyModel(path.join(root, 'tiny'), { generation: 'optimum-new', unet: 'smooth', unetBody: { channels: 32, layers: 2, attention: true }, vaeEncoder: false });
  unet = path.join(root, 'tiny', 'unet', 'model.onnx');
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

async function unetOutput(session: ort.InferenceSession): Promise<Float32Array> {
  const out = await session.run({
    sample: new ort.Tensor('float32', Float32Array.from({ length: 2 * 4 * 8 * 8 }, (_, i) => Math.sin(i)), [2, 4, 8, 8]),
    timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
    encoder_hidden_states: new ort.Tensor('float32', Float32Array.from({ length: 2 * 77 * 768 }, (_, i) => Math.cos(i * 0.01)), [2, 77, 768]),
  });
  return out['out_sample']!.data as Float32Array;
}

async function plan(cacheDir: string, key: Partial<typeof LEVEL & { ortVersion: string }> = {}): Promise<'hit' | 'write'> {
  const p = await planOptimizedSession(cacheDir, unet, {}, { ...LEVEL, ...key });
  if (p.kind === 'write') await p.abandon();
  return p.kind;
}

async function entries(cacheDir: string): Promise<string[]> {
  return (await readdir(cacheDir)).filter((n) => !n.startsWith('.'));
}

describe('optimised-graph cache', () => {
  it('writes the optimised graph on the first start and loads it on the next, with identical outputs', async () => {
    const cacheDir = path.join(root, 'cache-a');
    const plain = await createSession(unet, ['cpu']);
    const first = await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir });
    expect(await plan(cacheDir)).toBe('hit');
    const [entry] = await entries(cacheDir);
    expect(await readdir(path.join(cacheDir, entry!))).toEqual(expect.arrayContaining(['model.onnx', 'complete.json']));
    const second = await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir });
    const [a, b, c] = [await unetOutput(plain.session), await unetOutput(first.session), await unetOutput(second.session)];
    expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(Buffer.from(c.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    for (const s of [plain, first, second]) await s.session.release();
  });

  it('does not reuse an entry for a changed model file or another onnxruntime version, and replaces the stale one', async () => {
    const cacheDir = path.join(root, 'cache-b');
    await (await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir })).session.release();
    expect(await plan(cacheDir)).toBe('hit');
    expect(await plan(cacheDir, { ortVersion: '0.0.1-other' })).toBe('write');
    expect(await plan(cacheDir, { graphOptimizationLevel: 'extended' })).toBe('write');

    // The same bytes written again (a new modification time) count as a changed file.
    const data = path.join(path.dirname(unet), 'model.onnx_data');
    const file = (await stat(data).catch(() => undefined)) ? data : unet;
    const later = new Date(Date.now() + 60_000);
    await utimes(file, later, later);
    expect(await plan(cacheDir)).toBe('write');
    const before = await entries(cacheDir);
    await (await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir })).session.release();
    const after = await entries(cacheDir);
    expect(after).toHaveLength(1);
    expect(after[0]).not.toBe(before[0]);
    expect(await plan(cacheDir)).toBe('hit');
  });

  it('redoes an entry whose files were cut short, and clears what a dead writer left behind', async () => {
    const cacheDir = path.join(root, 'cache-c');
    await (await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir })).session.release();
    const [entry] = await entries(cacheDir);
    const graph = path.join(cacheDir, entry!, 'model.onnx');
    await truncate(graph, Math.floor((await stat(graph)).size / 2));
    // A write of a process that no longer exists (pid 2^22 + 1 is above Linux's pid_max default).
    const dead = path.join(cacheDir, `.writing-${entry}-4194305-1`);
    await mkdir(dead);
    await writeFile(path.join(dead, 'model.onnx'), 'partial');
    expect(await plan(cacheDir)).toBe('write');
    expect(await readdir(cacheDir)).not.toContain(path.basename(dead));

    const redone = await createSession(unet, ['cpu'], { optimizedCacheDir: cacheDir });
    expect(await plan(cacheDir)).toBe('hit');
    const record = JSON.parse(await readFile(path.join(cacheDir, entry!, 'complete.json'), 'utf8')) as { files: Record<string, number> };
    expect(record.files['model.onnx']).toBe((await stat(graph)).size);
    const plain = await createSession(unet, ['cpu']);
    expect(Buffer.from((await unetOutput(redone.session)).buffer).equals(Buffer.from((await unetOutput(plain.session)).buffer))).toBe(true);
    await redone.session.release();
    await plain.session.release();
  });
});
