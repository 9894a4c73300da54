// The engine against PyTorch on the committed demo model's learned weights: the same prompts and
// seeds sampled by train/demo/reference.py (torch CPU noise, diffusers' sampler formulas) must
// give the same final latents (within 1e-3) and pictures (within 1/255 on average). A wrong VAE
// scaling factor, channel order, timestep, tokenizer or text-encoder output would not.
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline } from '../engine/pipeline.js';
import { DEMO_MODELS_DIR } from '../engine/registry.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import type { SamplerName } from '../engine/types.js';
import path from 'node:path';

interface ReferencePicture {
  seed: number;
  latent: number[];
  channelMeans: number[];
  blockMeans: number[][][];
}
interface ReferenceCase {
  prompt: string;
  sampler: SamplerName;
  seed: number;
  ids: number[];
  pictures: ReferencePicture[];
}
interface Reference {
  steps: number;
  guidance: number;
  width: number;
  height: number;
  block: number;
  cases: ReferenceCase[];
}

const reference = JSON.parse(await readFile(new URL('./fixtures/demo-reference.json', import.meta.url), 'utf8')) as Reference;
let pipeline: Pipeline;

beforeAll(() => {
  pipeline = new Pipeline({ modelsDir: DEMO_MODELS_DIR, providers: ['cpu'], threads: 1 });
});

afterAll(async () => {
  await pipeline?.close();
});

/** Means of block×block squares of one channel-interleaved RGB picture, [c][row][col]. */
function blockMeans(rgb: Uint8Array, width: number, height: number, block: number): number[][][] {
  const out: number[][][] = [];
  for (let c = 0; c < 3; c++) {
    const rows: number[][] = [];
    for (let by = 0; by < height / block; by++) {
      const row: number[] = [];
      for (let bx = 0; bx < width / block; bx++) {
        let sum = 0;
        for (let y = 0; y < block; y++) for (let x = 0; x < block; x++) sum += rgb[3 * ((by * block + y) * width + bx * block + x) + c]!;
        row.push(sum / (block * block));
      }
      rows.push(row);
    }
    out.push(rows);
  }
  return out;
}

describe('demo model: engine vs PyTorch reference', () => {
  it('tokenizes the prompts as the Python tokenizer did', async () => {
    const tokenizer = await ClipTokenizer.load(path.join(DEMO_MODELS_DIR, 'demo', 'tokenizer'));
    for (const c of reference.cases) expect(Array.from(tokenizer.encode(c.prompt).ids.slice(0, 8)), c.prompt).toEqual(c.ids);
  });

  for (const c of reference.cases) {
    it(`${c.sampler}, "${c.prompt}", seeds ${c.seed}+: latents within 1e-3, pixels within 1/255 on average`, async () => {
      const latents: Float32Array[] = [];
      const result = await pipeline.generate(
        {
          model: 'demo',
          prompt: c.prompt,
          negativePrompt: '',
          width: reference.width,
          height: reference.height,
          steps: reference.steps,
          guidance: reference.guidance,
          sampler: c.sampler,
          seed: c.seed,
          count: c.pictures.length,
        },
        { onLatents: (x, _first, k) => { for (let j = 0; j < k; j++) latents.push(x.slice((j * x.length) / k, ((j + 1) * x.length) / k)); } },
      );
      expect(result.images.map((im) => im.seed)).toEqual(c.pictures.map((p) => p.seed));
      for (const [i, ref] of c.pictures.entries()) {
        const latent = latents[i]!;
        expect(latent.length).toBe(ref.latent.length);
        let maxDiff = 0;
        for (let k = 0; k < latent.length; k++) maxDiff = Math.max(maxDiff, Math.abs(latent[k]! - ref.latent[k]!));
        expect(maxDiff, `picture ${i} latent`).toBeLessThan(1e-3);

        const image = result.images[i]!;
        const blocks = blockMeans(image.rgb, image.width, image.height, reference.block);
        let sum = 0;
        let n = 0;
        for (let ch = 0; ch < 3; ch++) {
          ref.blockMeans[ch]!.forEach((row, y) => row.forEach((v, x) => { sum += Math.abs(blocks[ch]![y]![x]! - v); n++; }));
        }
        expect(sum / n, `picture ${i} mean block difference (0-255)`).toBeLessThan(1);
      }
    });
  }
});
