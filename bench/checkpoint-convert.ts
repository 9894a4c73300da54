// npx tsx bench/checkpoint-convert.ts [--family sd15|sdxl] [--dir DIR] [--keep] [--step] [--skip-load] [--tokenizer DIR]
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
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { du } from './dir-size.js';
import * as ort from 'onnxruntime-node';
import { prepareCheckpoint } from '../engine/checkpoint/prepare.js';
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


async function phase(name: string, file: string, cache: string, tokenizerDir: string | undefined): Promise<Report> {
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
      const dir = path.join(cache, (await readdir(cache))[0]!);
      const sessions: Record<string, ort.InferenceSession> = {};
      for (const part of ['text_encoder', ...(layoutOf(file) === 'sdxl' ? ['text_encoder_2'] : []), 'unet', 'vae_decoder']) {
        sessions[part] = await ort.InferenceSession.create(path.join(dir, part, 'model.onnx'));
      }
      const report: Report = { loadSeconds: seconds(), loadPeakRssMb: peakRssMb() };
      if (name === 'step') {
        const unet = sessions['unet']!;
        const run = () =>
          unet.run({
            sample: new ort.Tensor('float32', new Float32Array(2 * 4 * 64 * 64).fill(0.1), [2, 4, 64, 64]),
            timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
            encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 768).fill(0.01), [2, 77, 768]),
          });
        await run(); // warm-up
        const t0 = performance.now();
        await run();
        report['unetStepSeconds'] = Math.round((performance.now() - t0) / 100) / 10;
        report['stepPeakRssMb'] = peakRssMb();
      }
      for (const s of Object.values(sessions)) await s.release();
      return report;
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
    },
  });
  const family = values.family as string;
  if (family !== 'sd15' && family !== 'sdxl') throw new Error(`--family ${family}: use sd15 or sdxl`);
  if (family === 'sdxl' && values.step) throw new Error('--step times an SD 1.5 UNet call; it is not written for SDXL');
  if (positionals[0] === 'phase') {
    const [, name, file, cache, tokenizerDir] = positionals as [string, string, string, string, string | undefined];
    process.stdout.write(`${JSON.stringify(await phase(name, file, cache, tokenizerDir))}\n`);
    return;
  }
  const dir = values.dir ?? (await mkdtemp(path.join(tmpdir(), 'ckpt-bench-')));
  const file = path.join(dir, `random-${family}-fp16.safetensors`);
  const cache = path.join(dir, 'cache');
  const self = fileURLToPath(import.meta.url);
  try {
    const phases = ['write', 'prepare', 'prepare-again', ...(values['skip-load'] ? [] : [values.step ? 'step' : 'load'])];
    for (const name of phases) {
      const child = spawnSync(process.execPath, [...process.execArgv, self, 'phase', name, file, cache, ...(values.tokenizer === undefined ? [] : [values.tokenizer])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      if (child.status !== 0) throw new Error(`phase ${name} failed (exit ${child.status})`);
      const line = child.stdout.trim().split('\n').at(-1) ?? '{}';
      process.stdout.write(`${name.padEnd(14)} ${line}\n`);
    }
  } finally {
    if (!values.keep) await rm(dir, { recursive: true, force: true });
  }
}

await main();
