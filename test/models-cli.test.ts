// `npm run models`: the listing (family, native size, dtype, source, the LoRAs and embeddings that
// fit) and its refusals, one line each, with a non-zero exit.
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scanCatalogue } from '../engine/checkpoint/catalogue.js';
import { bytesOf, encodeSafetensorsHeader, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { formatCatalogue, progressLine } from '../engine/models-cli.js';
import layout from './fixtures/reference/sd15_layout.json' with { type: 'json' };

let dir: string;
let models: string;

/** A full SD 1.5-layout fp16 checkpoint as a sparse file: real header, zero weights, no disk used. */
async function sparseSd15(file: string): Promise<void> {
  const tensors = Object.entries(layout.tensors as Record<string, number[]>).map(([name, shape]) => ({ name, dtype: 'F16' as const, shape, data: () => new Uint8Array(0) }));
  const header = encodeSafetensorsHeader(tensors);
  const dataBytes = tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1) * 2, 0);
  await writeFile(file, header);
  await truncate(file, header.length + dataBytes);
}

const small = (file: string, tensors: Record<string, number[]>) =>
  writeSafetensors(
    file,
    Object.entries(tensors).map(([name, shape]) => ({ name, dtype: 'F32' as const, shape, data: () => bytesOf(new Float32Array(shape.reduce((a, b) => a * b, 1))) })),
  );

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'models-cli-'));
  models = path.join(dir, 'models');
  for (const sub of ['checkpoints', 'loras', 'embeddings']) await mkdir(path.join(models, sub), { recursive: true });
  await sparseSd15(path.join(models, 'checkpoints', 'dreamy.safetensors'));
  await small(path.join(models, 'loras', 'foxy.safetensors'), {
    'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': [4, 768],
    'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': [320, 4],
  });
  await small(path.join(models, 'loras', 'pixel-xl.safetensors'), {
    'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight': [4, 2048],
    'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight': [640, 4],
  });
  await small(path.join(models, 'embeddings', 'bad-hands.safetensors'), { emb_params: [4, 768] });
  await writeFile(path.join(models, 'old.ckpt'), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
  await writeFile(path.join(models, 'notes.txt'), 'not a model');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the catalogue of models/', () => {
  it('lists the checkpoint with family, size, dtype and source, the LoRAs and embeddings that fit, and each refusal in one line', async () => {
    const text = formatCatalogue(await scanCatalogue(models));
    const lines = text.split('\n');
    expect(lines[0]).toBe('dreamy  SD 1.x  512²  fp16  checkpoint');
    expect(lines).toContain('    LoRAs: foxy');
    expect(lines).toContain('    embeddings: bad-hands');
    expect(lines).toContain('pixel-xl: for SDXL models; none installed');
    const refusal = lines.find((l) => l.startsWith('old: cannot be used:'));
    expect(refusal).toMatch(/pickle/i);
    expect(text).not.toContain('notes');
  });
});

describe('progress bar', () => {
  it('shows the stage, a bar and the percentage', () => {
    expect(progressLine({ stage: 'building', part: 'unet', tensorsDone: 5, tensorsTotal: 10 }, 10)).toBe('UNet         [#####-----]  50%');
    expect(progressLine({ stage: 'hashing', bytesDone: 0, bytesTotal: 0 }, 4)).toBe('hashing      [####] 100%');
  });
});

describe('npm run models (the process)', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', 'engine/models-cli.ts', ...args], { encoding: 'utf8', cwd: path.resolve(import.meta.dirname, '..') });

  it('list prints the catalogue and exits 0', () => {
    const r = run('list', '--models', models);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('dreamy  SD 1.x  512²  fp16  checkpoint');
  });

  it.each([
    [['prepare', 'nothing-here'], /^models: no checkpoint "nothing-here" in /],
    [['prepare', 'old.ckpt'], /^models: .*pickle/i],
    [['prepare', path.join('loras', 'foxy.safetensors')], /^models: foxy\.safetensors is not a Stable Diffusion checkpoint: a LoRA file\.$/],
    [['list', '--models', '/nonexistent-models-dir'], /^models: the models directory \/nonexistent-models-dir does not exist$/],
    [['frobnicate'], /^models: unknown command "frobnicate"/],
  ])('%j is refused in one line with a non-zero exit', (args, message) => {
    const r = run(...args, ...(args[0] === 'prepare' ? ['--models', models, '--cache', path.join(dir, 'cache')] : []));
    expect(r.status).not.toBe(0);
    const first = r.stderr.split('\n')[0]!;
    expect(first).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('prepare takes a diffusers folder, and refuses one with a pickled part naming the part', async () => {
    const folder = path.join(dir, 'pickled-diffusers');
    await mkdir(path.join(folder, 'unet'), { recursive: true });
    await mkdir(path.join(folder, 'text_encoder'), { recursive: true });
    await writeFile(path.join(folder, 'unet', 'config.json'), JSON.stringify({ cross_attention_dim: 768 }));
    await small(path.join(folder, 'unet', 'diffusion_pytorch_model.safetensors'), { 'conv_in.weight': [320, 4, 3, 3] });
    await writeFile(path.join(folder, 'text_encoder', 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x7d, 0x2e]));
    const r = run('prepare', folder, '--cache', path.join(dir, 'cache'));
    expect(r.status).not.toBe(0);
    expect(r.stderr.split('\n')[0]).toMatch(/^models: pickled-diffusers\/text_encoder: pytorch_model\.bin .*pickle/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
