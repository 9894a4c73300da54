// npx tsx bench/graph-forms.ts [--size tiny|proxy] [--runs N]
//
// The graph forms of onnx-build/layers.ts side by side on the CPU provider: the same fp16
// synthetic SD 1.x checkpoint written as a model folder in each form (fp32, fp16-storage, fp16
// compute; plain or fused attention), then per form: folder size, session load time and peak RSS
// (each load in its own process), one UNet call (batch 2, guidance) and the 4-step generation's
// largest pixel difference from the fp32 plain-op folder of the same weights.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import type { GraphForm } from '../engine/onnx-build/layers.js';
import { generateTiny, tinyE2EReference as reference, tinyFolderPlan } from '../test/fixtures/reference/tiny-generation.js';
import { du } from './dir-size.js';

const FORMS: Record<string, GraphForm> = {
  'fp32 plain': { precision: 'fp32', attention: 'plain' },
  'fp32 fused': { precision: 'fp32', attention: 'fused' },
  'fp16-storage plain': { precision: 'fp16-storage', attention: 'plain' },
  'fp16-storage fused': { precision: 'fp16-storage', attention: 'fused' },
  'fp16-resident plain': { precision: 'fp16-resident', attention: 'plain' },
  'fp16-resident fused': { precision: 'fp16-resident', attention: 'fused' },
  'fp16 plain': { precision: 'fp16', attention: 'plain' },
  'fp16 fused': { precision: 'fp16', attention: 'fused' },
};

const peakRssMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024);

async function child(dir: string, runs: number): Promise<void> {
  const t0 = performance.now();
  const open = (part: string) => ort.InferenceSession.create(path.join(dir, part, 'model.onnx'), { logSeverityLevel: 3 });
  const sessions = { text: await open('text_encoder'), unet: await open('unet'), vae: await open('vae_decoder') };
  const loadMs = performance.now() - t0;
  const loadRss = peakRssMb();
  await generateTiny(sessions); // warm-up
  const t1 = performance.now();
  let image: ort.Tensor | undefined;
  for (let r = 0; r < runs; r++) image = (await generateTiny(sessions)).image;
  const genMs = (performance.now() - t1) / runs;
  process.stdout.write(JSON.stringify({ loadMs, loadRss, genMs, peakRss: peakRssMb(), image: Array.from(image!.data as Float32Array) }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { child: { type: 'string' }, runs: { type: 'string', default: '5' } } });
  const runs = Number(values.runs);
  if (values.child !== undefined) return child(values.child, runs);
  const dir = await mkdtemp(path.join(tmpdir(), 'graph-forms-'));
  try {
    const file = path.join(dir, 'tiny-fp16.safetensors');
    await writeSafetensors(
      file,
      Object.entries(reference.tensors).map(([name, shape]) => ({
        name,
        dtype: 'F16' as const,
        shape,
        data: () => bytesOf(float32ToFloat16Bits(syntheticTensor(name, shape, 0))),
      })),
    );
    let base: number[] | undefined;
    console.log('| form | folder | load | load peak RSS | 4-step generation | largest pixel difference from fp32 plain |');
    console.log('| --- | --- | --- | --- | --- | --- |');
    for (const [label, form] of Object.entries(FORMS)) {
      const out = path.join(dir, label.replace(/ /g, '-'));
      const weights = await openWeightsFile(file);
      try {
        await writeModelFolder(weights, { ...tinyFolderPlan, form }, out);
      } finally {
        await weights.close();
      }
      const self = fileURLToPath(import.meta.url);
      const r = spawnSync(process.execPath, ['--import', 'tsx', self, '--child', out, '--runs', String(runs)], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${label}: ${r.stderr}`);
      const m = JSON.parse(r.stdout) as { loadMs: number; loadRss: number; genMs: number; image: number[] };
      base ??= m.image;
      let worst = 0;
      for (let i = 0; i < base.length; i++) worst = Math.max(worst, Math.abs(m.image[i]! - base[i]!));
      console.log(`| ${label} | ${((await du(out)) / 1024).toFixed(0)} KB | ${m.loadMs.toFixed(0)} ms | ${m.loadRss} MB | ${m.genMs.toFixed(0)} ms | ${worst.toExponential(2)} |`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
