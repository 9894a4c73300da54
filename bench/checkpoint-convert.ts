// npx tsx bench/checkpoint-convert.ts [--family sd15|sdxl] [--dir DIR] [--keep] [--step] [--skip-load] [--tokenizer DIR]
//                                      [--forms fp16-resident:fused,fp32:plain,...] [--alternate]
//
// --family sdxl writes the SDXL base layout instead (test/fixtures/reference/sdxl_layout.json:
// 3.47 B parameters, ≈6.9 GB as fp16; the prepared fp32 folder is ≈14 GB, so check the disk
// first), and the load phase also loads text_encoder_2. --step is SD 1.5 only. --skip-load stops
// after the second prepare (loading SDXL's fp32 UNet takes ≈10 GB of memory). Full-size runs go
// under the shared lock: flock /tmp/fullsize.lock nice -n 10 npx tsx bench/checkpoint-convert.ts …
//
// Full-size checkpoint conversion on random weights: writes an SD 1.5-shaped fp16 checkpoint
// (the layout in test/fixtures/reference/sd15_layout.json: 1.03 B parameters, ≈2.1 GB), then
// prepares it (detection, content hash, text encoder / UNet / VAE decoder graphs written as a
// model folder with external data) into a fresh cache, prepares it again (cache hit), and loads
// the three parts into onnxruntime. Each phase runs in its own process so its peak RSS is its own.
// --step also times one UNet call at 512² with guidance (batch 2). --tokenizer copies a CLIP
// tokenizer folder into the prepared model, so `npm run imagine -- --model <entry>` can draw.
// --forms prepares, loads (and steps) once per graph form (precision:attention, onnx-build/layers.ts),
// each into its own cache; default: the form the CPU provider gets (checkpoint/graph-form.ts).
// With --dir, a checkpoint already there is reused (not rewritten) and kept. --alternate then
// loads every form's UNet together and times calls in turn (A B A B …: 3 rounds after a warm-up).
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { du } from './dir-size.js';
import * as ort from 'onnxruntime-node';
import { graphFormFor } from '../engine/checkpoint/graph-form.js';
import { prepareCheckpoint } from '../engine/checkpoint/prepare.js';
import type { AttentionForm, GraphForm, GraphPrecision } from '../engine/onnx-build/layers.js';
import { writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import sd15Layout from '../test/fixtures/reference/sd15_layout.json' with { type: 'json' };
import sdxlLayout from '../test/fixtures/reference/sdxl_layout.json' with { type: 'json' };

const LAYOUTS = { sd15: sd15Layout.tensors, sdxl: sdxlLayout.tensors } as const;
type LayoutName = keyof typeof LAYOUTS;
const layoutOf = (file: string): LayoutName => (path.basename(file).includes('sdxl') ? 'sdxl' : 'sd15');

type Report = Record<string, number | string | boolean>;

const MB = 1024 * 1024;
const peakRssMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024);


function parseForm(text: string): GraphForm {
  const [precision, attention] = text.split(':') as [GraphPrecision, AttentionForm | undefined];
  if (!['fp32', 'fp16-storage', 'fp16-resident', 'fp16'].includes(precision) || !['plain', 'fused'].includes(attention ?? '')) {
    throw new Error(`--forms: "${text}" is not precision:attention (fp32|fp16-storage|fp16-resident|fp16 : plain|fused)`);
  }
  return { precision, attention: attention! };
}

const ALTERNATE_ROUNDS = 3;

async function preparedDir(cache: string): Promise<string> {
  const entries = (await readdir(cache, { withFileTypes: true })).filter((e) => e.isDirectory());
  if (entries.length !== 1) throw new Error(`${cache} should hold one prepared folder, holds ${entries.length}`);
  return path.join(cache, entries[0]!.name);
}

/** One UNet call at 512² with guidance (batch 2), in seconds. */
async function unetStep(unet: ort.InferenceSession): Promise<number> {
  const t0 = performance.now();
  await unet.run({
    sample: new ort.Tensor('float32', new Float32Array(2 * 4 * 64 * 64).fill(0.1), [2, 4, 64, 64]),
    timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
    encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 768).fill(0.01), [2, 77, 768]),
  });
  return Math.round((performance.now() - t0) / 100) / 10;
}

async function phase(name: string, file: string, cache: string, form: GraphForm, tokenizerDir: string | undefined): Promise<Report> {
  const started = performance.now();
  const seconds = () => Math.round((performance.now() - started) / 100) / 10;
  switch (name) {
    case 'write': {
      await writeSafetensors(
        file,
        Object.entries(LAYOUTS[layoutOf(file)] as Record<string, number[]>).map(([tensor, shape]) => ({
          name: tensor,
          dtype: 'F16' as const,
          shape,
          data: () => {
            const bits = float32ToFloat16Bits(syntheticTensor(tensor, shape));
            return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
          },
        })),
      );
      return { seconds: seconds(), fileMb: Math.round((await stat(file)).size / MB), peakRssMb: peakRssMb() };
    }
    case 'prepare':
    case 'prepare-again': {
      let hashSeconds = 0;
      const partStart = new Map<string, number>();
      const prepared = await prepareCheckpoint(file, {
        cacheDir: cache,
        form,
        ...(tokenizerDir === undefined ? {} : { tokenizerDir }),
        onProgress: (p) => {
          if (p.stage === 'hashing' && p.bytesDone === p.bytesTotal) hashSeconds = seconds();
          if (p.stage === 'building' && p.tensorsDone === 0) partStart.set(p.part, performance.now());
        },
      });
      return {
        seconds: seconds(),
        hashSeconds,
        reused: prepared.reused,
        family: prepared.info.family,
        cacheMb: Math.round((await du(prepared.dir)) / MB),
        peakRssMb: peakRssMb(),
        dir: prepared.dir,
      };
    }
    case 'load':
    case 'step': {
      const dir = await preparedDir(cache);
      const sessions: Record<string, ort.InferenceSession> = {};
      for (const part of ['text_encoder', ...(layoutOf(file) === 'sdxl' ? ['text_encoder_2'] : []), 'unet', 'vae_decoder']) {
        sessions[part] = await ort.InferenceSession.create(path.join(dir, part, 'model.onnx'), { logSeverityLevel: 3 });
      }
      // After loading, the weights as onnxruntime holds them; the load's own peak can be higher.
      const report: Report = { loadSeconds: seconds(), loadPeakRssMb: peakRssMb(), rssAfterLoadMb: Math.round(process.memoryUsage().rss / MB) };
      if (name === 'step') {
        await unetStep(sessions['unet']!); // warm-up
        report['unetStepSeconds'] = await unetStep(sessions['unet']!);
        report['stepPeakRssMb'] = peakRssMb();
      }
      for (const s of Object.values(sessions)) await s.release();
      return report;
    }
    case 'alternate': {
      // Every form's UNet loaded at once, then timed calls taken in turn (A B A B …), so the
      // shared machine's changing load falls on the forms alike.
      const caches = cache.split(',');
      const unets = await Promise.all(caches.map(async (c) => ort.InferenceSession.create(path.join(await preparedDir(c), 'unet', 'model.onnx'), { logSeverityLevel: 3 })));
      const times: number[][] = caches.map(() => []);
      for (const u of unets) await unetStep(u); // warm-up
      for (let round = 0; round < ALTERNATE_ROUNDS; round++) for (const [i, u] of unets.entries()) times[i]!.push(await unetStep(u));
      for (const u of unets) await u.release();
      return Object.fromEntries(caches.map((c, i) => [path.basename(c), times[i]!.join(' / ')]));
    }
    default:
      throw new Error(`unknown phase ${name}`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      family: { type: 'string', default: 'sd15' },
      dir: { type: 'string' },
      keep: { type: 'boolean' },
      step: { type: 'boolean' },
      'skip-load': { type: 'boolean' },
      tokenizer: { type: 'string' },
      forms: { type: 'string' },
      alternate: { type: 'boolean' },
    },
  });
  const family = values.family as string;
  if (family !== 'sd15' && family !== 'sdxl') throw new Error(`--family ${family}: use sd15 or sdxl`);
  if (family === 'sdxl' && values.step) throw new Error('--step times an SD 1.5 UNet call; it is not written for SDXL');
  if (positionals[0] === 'phase') {
    const [, name, file, cache, form, tokenizerDir] = positionals as [string, string, string, string, string, string | undefined];
    process.stdout.write(`${JSON.stringify(await phase(name, file, cache, parseForm(form), tokenizerDir))}\n`);
    return;
  }
  const forms = values.forms?.split(',').map(parseForm) ?? [graphFormFor(['cpu'], 'fp16')];
  const dir = values.dir ?? (await mkdtemp(path.join(tmpdir(), 'ckpt-bench-')));
  const file = path.join(dir, `random-${family}-fp16.safetensors`);
  const reuseFile = values.dir !== undefined && (await stat(file).then(() => true, () => false));
  const self = fileURLToPath(import.meta.url);
  const run = (name: string, cache: string, form: GraphForm): void => {
    const formText = `${form.precision}:${form.attention}`;
    const child = spawnSync(process.execPath, [...process.execArgv, self, 'phase', name, file, cache, formText, ...(values.tokenizer === undefined ? [] : [values.tokenizer])], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (child.status !== 0) throw new Error(`phase ${name} (${formText}) failed (exit ${child.status})`);
    const line = child.stdout.trim().split('\n').at(-1) ?? '{}';
    process.stdout.write(`${formText.padEnd(20)} ${name.padEnd(14)} ${line}\n`);
  };
  const caches: string[] = [];
  try {
    if (!reuseFile) run('write', '', forms[0]!);
    for (const form of forms) {
      const cache = path.join(dir, `cache-${form.precision}-${form.attention}`);
      caches.push(cache);
      await rm(cache, { recursive: true, force: true });
      // First start: prepare then load; second start: prepare (cache hit) then load again.
      const phases = values['skip-load'] ? ['prepare', 'prepare-again'] : ['prepare', 'load', 'prepare-again', values.step ? 'step' : 'load'];
      for (const name of phases) run(name, cache, form);
    }
    if (values.alternate) run('alternate', caches.join(','), forms[0]!);
  } finally {
    if (!values.keep) {
      if (values.dir === undefined) await rm(dir, { recursive: true, force: true });
      else for (const cache of caches) await rm(cache, { recursive: true, force: true });
    }
  }
}

await main();
