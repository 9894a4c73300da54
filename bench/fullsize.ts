// npm run bench:engine -- --fullsize DIR [--fullsize-before ROOT] [--fullsize-size 512] [--fullsize-steps 1]
//
// A full-size model folder (e.g. the random-weight SD 1.5 that `npx tsx bench/checkpoint-convert.ts
// --dir /work/fullsize/sd15 --keep --tokenizer …` prepares) drawn by the engine's Pipeline, each
// configuration in a fresh process so its peak RSS is its own:
//   - normal mode, first start (the optimised-graph cache empty), then a cached start;
//   - low memory mode (cached start);
//   - with --fullsize-before ROOT: the same job through another checkout's engine (e.g. main's) first.
// Prints per configuration: load time, RSS after the load, per-step time, decode (VAE + RGB) time,
// PNG encode time, peak RSS, and the load average when it ran; and once, the time to read the
// weight files (from the page cache when they were read recently: a lower bound of a cold read).
// Run it under `flock /tmp/fullsize.lock nice -n 10 …` on a shared machine: ~10 GB at peak.
// --fullsize-options instead compares onnxruntime session options on the model's VAE decoder
// (≈ 1.3 GB at peak at 512², no lock needed): where the memory beyond the weights comes from.
import { spawnSync } from 'node:child_process';
import { mkdir, open, readdir, rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as ort from 'onnxruntime-node';

interface ChildArgs {
  root: string;
  modelDir: string;
  memory: 'normal' | 'low';
  cacheDir: string | undefined;
  size: number;
  steps: number;
}

interface Figures {
  label?: string;
  loadS: number;
  rssAfterLoadMb: number;
  stepS: number;
  decodeS: number;
  encodeS: number;
  peakRssMb: number;
  load1: string;
}

const MB = 1024 * 1024;
const rssMb = (): number => Math.round(process.memoryUsage().rss / MB);
const peakMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024);
const seconds = (ms: number): number => Math.round(ms / 100) / 10;

/** One configuration, in this process: loads the model through `root`'s engine and draws one job. */
async function child(a: ChildArgs): Promise<Figures> {
  const load1 = loadavg()[0]!.toFixed(1);
  const { Pipeline } = (await import(pathToFileURL(path.join(a.root, 'engine/pipeline.ts')).href)) as typeof import('../engine/pipeline.js');
  const { pngWithParameters } = (await import(pathToFileURL(path.join(a.root, 'src/render/png.ts')).href)) as typeof import('../src/render/png.js');
  const t0 = performance.now();
  let loadedAt = 0;
  let rssAfterLoad = 0;
  const stepsAt: number[] = [];
  const pipeline = new Pipeline({
    modelsDir: path.dirname(a.modelDir),
    providers: ['cpu'],
    memory: a.memory,
    ...(a.cacheDir ? { optimizedCacheDir: a.cacheDir } : {}),
    log: {
      info: (_obj, msg) => {
        if (msg === 'model loaded') {
          loadedAt = performance.now();
          rssAfterLoad = rssMb();
        }
      },
      warn: (obj, msg) => process.stderr.write(`${msg} ${JSON.stringify(obj)}\n`),
    },
  });
  const result = await pipeline.generate(
    {
      model: path.basename(a.modelDir),
      prompt: 'a lighthouse on a cliff at dusk',
      negativePrompt: 'blurry',
      width: a.size,
      height: a.size,
      steps: a.steps,
      guidance: 7,
      sampler: 'Euler',
      seed: 1,
      count: 1,
    },
    { onStep: () => stepsAt.push(performance.now()) },
  );
  const drawnAt = performance.now();
  const image = result.images[0]!;
  const e0 = performance.now();
  await pngWithParameters(image.rgb, image.width, image.height, image.infoText);
  const encodeMs = performance.now() - e0;
  await pipeline.close();
  // The first step starts after the text encoder; the per-step time is the mean of the steps.
  const firstStepStart = stepsAt.length > 1 ? stepsAt[0]! - (stepsAt[stepsAt.length - 1]! - stepsAt[0]!) / (stepsAt.length - 1) : loadedAt;
  return {
    loadS: seconds(loadedAt - t0),
    rssAfterLoadMb: rssAfterLoad,
    stepS: seconds((stepsAt[stepsAt.length - 1]! - firstStepStart) / stepsAt.length),
    decodeS: seconds(drawnAt - stepsAt[stepsAt.length - 1]!),
    encodeS: Math.round(encodeMs) / 1000,
    peakRssMb: peakMb(),
    load1,
  };
}

/** Bytes and seconds to read every weight file of the model (whatever the page cache holds). */
async function readWeights(modelDir: string): Promise<{ mb: number; s: number }> {
  let bytes = 0;
  const t0 = performance.now();
  const buffer = Buffer.alloc(16 * MB);
  for (const part of ['unet', 'text_encoder', 'vae_decoder', 'vae_encoder']) {
    let names: string[];
    try {
      names = await readdir(path.join(modelDir, part));
    } catch {
      continue;
    }
    for (const name of names) {
      if (name.endsWith('.json')) continue;
      const file = path.join(modelDir, part, name);
      if (!(await stat(file)).isFile()) continue;
      const handle = await open(file, 'r');
      try {
        for (;;) {
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
          if (bytesRead === 0) break;
          bytes += bytesRead;
        }
      } finally {
        await handle.close();
      }
    }
  }
  return { mb: Math.round(bytes / MB), s: seconds(performance.now() - t0) };
}

export interface FullsizeOptions {
  modelDir: string;
  before: string | undefined;
  size: number;
  steps: number;
  /** Only the session-option comparison (optionsTable). */
  optionsOnly: boolean;
}

/** Runs every configuration in its own process and prints one table. */
export async function fullsizeTable(o: FullsizeOptions): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const here = path.resolve(path.dirname(self), '..');
  const cacheDir = path.join(path.dirname(o.modelDir), '.bench-onnx-optimized');
  await rm(cacheDir, { recursive: true, force: true });
  await mkdir(cacheDir, { recursive: true });
  const runs: { label: string; args: ChildArgs }[] = [];
  const base = { modelDir: path.resolve(o.modelDir), size: o.size, steps: o.steps };
  if (o.before) runs.push({ label: `before (${o.before})`, args: { ...base, root: path.resolve(o.before), memory: 'normal', cacheDir: undefined } });
  runs.push({ label: 'after, normal, first start', args: { ...base, root: here, memory: 'normal', cacheDir } });
  runs.push({ label: 'after, normal, cached start', args: { ...base, root: here, memory: 'normal', cacheDir } });
  runs.push({ label: 'after, low memory, cached start', args: { ...base, root: here, memory: 'low', cacheDir } });

  const weights = await readWeights(o.modelDir);
  process.stdout.write(
    `full-size model ${o.modelDir}: ${weights.mb} MB of weight files, read in ${weights.s} s (load average ${loadavg()[0]!.toFixed(1)}); ` +
      `job ${o.size}×${o.size}, ${o.steps} step(s), guidance 7 (UNet batch 2), CPU provider\n`,
  );
  process.stdout.write('| configuration | load s | RSS after load MB | s/step | decode s | PNG encode s | peak RSS MB | load avg |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n');
  for (const run of runs) {
    const out = spawnSync(process.execPath, [...process.execArgv, self, 'child', JSON.stringify(run.args)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = out.stdout.trim().split('\n').at(-1) ?? '';
    if (out.status !== 0 || !line.startsWith('{')) {
      process.stdout.write(`| ${run.label} | failed (exit ${out.status}) |\n`);
      continue;
    }
    const f = JSON.parse(line) as Figures;
    process.stdout.write(`| ${run.label} | ${f.loadS} | ${f.rssAfterLoadMb} | ${f.stepS} | ${f.decodeS} | ${f.encodeS} | ${f.peakRssMb} | ${f.load1} |\n`);
  }
  await rm(cacheDir, { recursive: true, force: true });
}

/** Session option sets compared by optionsTable (all in onnxruntime-common 1.30's SessionOptions). */
const OPTION_SETS: Record<string, ort.InferenceSession.SessionOptions> = {
  "level 'all' (the engine's normal mode)": { graphOptimizationLevel: 'all' },
  "level 'extended'": { graphOptimizationLevel: 'extended' },
  'all, no CPU arena, no memory pattern (low memory mode)': { graphOptimizationLevel: 'all', enableCpuMemArena: false, enableMemPattern: false },
  'all, session.disable_prepacking': { graphOptimizationLevel: 'all', extra: { session: { disable_prepacking: '1' } } },
  'all, session.use_env_allocators': { graphOptimizationLevel: 'all', extra: { session: { use_env_allocators: '1' } } },
};

/** One option set on one part, in this process: RSS growth after the load, after one run, and at peak. */
async function optionsChild(modelDir: string, part: string, name: string, side: number): Promise<Record<string, number | string>> {
  const load1 = loadavg()[0]!.toFixed(1);
  const base = rssMb();
  const t0 = performance.now();
  const session = await ort.InferenceSession.create(path.join(modelDir, part, 'model.onnx'), { logSeverityLevel: 3, ...OPTION_SETS[name] });
  const loadS = seconds(performance.now() - t0);
  const afterLoadMb = rssMb() - base;
  const l = side / 8;
  const t1 = performance.now();
  await session.run({ latent_sample: new ort.Tensor('float32', new Float32Array(4 * l * l).fill(0.1), [1, 4, l, l]) });
  const runS = seconds(performance.now() - t1);
  const afterRunMb = rssMb() - base;
  return { loadS, afterLoadMb, runS, afterRunMb, peakMb: peakMb() - base, load1 };
}

/** The VAE decoder (small enough to need no lock) under each option set, each in its own process. */
export async function optionsTable(modelDir: string, side: number): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const part = 'vae_decoder';
  process.stdout.write(`${part} of ${modelDir}, one decode at ${side}×${side}; RSS growth over the process's start, MB\n`);
  process.stdout.write('| session options | load s | after load | decode s | after decode | peak | load avg |\n| --- | --- | --- | --- | --- | --- | --- |\n');
  for (const name of Object.keys(OPTION_SETS)) {
    const out = spawnSync(process.execPath, [...process.execArgv, self, 'options-child', modelDir, part, name, String(side)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = out.stdout.trim().split('\n').at(-1) ?? '';
    if (out.status !== 0 || !line.startsWith('{')) {
      process.stdout.write(`| ${name} | failed (exit ${out.status}) |\n`);
      continue;
    }
    const f = JSON.parse(line) as Record<string, number | string>;
    process.stdout.write(`| ${name} | ${f['loadS']} | ${f['afterLoadMb']} | ${f['runS']} | ${f['afterRunMb']} | ${f['peakMb']} | ${f['load1']} |\n`);
  }
}

if (process.argv[2] === 'child') {
  process.stdout.write(`${JSON.stringify(await child(JSON.parse(process.argv[3]!) as ChildArgs))}\n`);
}
if (process.argv[2] === 'options-child') {
  const [, , , modelDir, part, name, side] = process.argv;
  process.stdout.write(`${JSON.stringify(await optionsChild(modelDir!, part!, name!, Number(side)))}\n`);
}
