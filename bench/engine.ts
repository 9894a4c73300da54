// npm run bench:engine [-- --provider cpu|webgpu|cuda --generations N --steps N --model DIR --threads N]
//
// Measures the engine as the bot runs it (createEngine → worker thread) on a synthetic model with
// Stable-Diffusion-like shapes (512×512 pictures → 4×64×64 latents, 77×768 conditioning, CFG batch
// 2), or on a real model folder with --model. Prints, each with its goal and value/goal ratio:
//   - per-step wall time;
//   - the share of step time spent outside onnxruntime's session.run (goal < 2 %);
//   - the main thread's event-loop delay p99 while pictures are drawn (goal < 50 ms);
//   - RSS growth over the generations after a warm-up (goal: flat, < 5 %);
//   - one-by-one versus batched UNet calls for a 4-picture job (which the pipeline should use);
//   - first, on a tiny-UNet proxy with SD 1.5's input shapes (4×64×64 latents, 77×768
//     conditioning, so onnxruntime's own share is small and the engine's JS cost shows): the
//     time per step spent outside session.run, for every sampler × fp32/fp16 export (goal ≤ 0.3 ms).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createEngine, type WorkerEngine } from '../engine/index.js';
import { SAMPLERS, type ExecutionProviderName, type GenerateRequest, type ModelInfo, type SamplerName } from '../engine/types.js';
import { writeTinyModel } from '../test/fixtures/tiny-models.js';
import { fullsizeTable, optionsTable, type FullsizeOptions } from './fullsize.js';

const USAGE = `npm run bench:engine -- [--provider cpu|webgpu|cuda] [--generations 50] [--steps 10]
                        [--model DIR] [--threads N] [--size 512] [--sampler NAME] [--no-batch-compare]
                        [--grid-steps 4]   (steps of the 4-picture job; 20 times a real 2×2 grid)
                        [--proxy-only | --no-proxy] [--proxy-generations 12]
                        [--fullsize DIR [--fullsize-before CHECKOUT] [--fullsize-size 512] [--fullsize-steps 1] [--fullsize-options]]
                           (only the full-size figures: bench/fullsize.ts)`;

interface Args {
  provider: ExecutionProviderName;
  generations: number;
  steps: number;
  model: string | undefined;
  threads: number;
  size: number | undefined;
  sampler: SamplerName | undefined;
  batchCompare: boolean;
  gridSteps: number;
  proxy: 'only' | 'also' | 'skip';
  proxyGenerations: number;
  fullsize: FullsizeOptions | undefined;
}

function fail(message: string): never {
  process.stderr.write(`bench:engine: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parse(): Args {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        provider: { type: 'string', default: 'cpu' },
        generations: { type: 'string', default: '50' },
        steps: { type: 'string', default: '10' },
        model: { type: 'string' },
        threads: { type: 'string', default: '0' },
        size: { type: 'string' },
        sampler: { type: 'string' },
        'no-batch-compare': { type: 'boolean', default: false },
        'grid-steps': { type: 'string', default: '4' },
        'proxy-only': { type: 'boolean', default: false },
        'no-proxy': { type: 'boolean', default: false },
        'proxy-generations': { type: 'string', default: '12' },
        fullsize: { type: 'string' },
        'fullsize-before': { type: 'string' },
        'fullsize-size': { type: 'string', default: '512' },
        'fullsize-steps': { type: 'string', default: '1' },
        'fullsize-options': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const whole = (name: string, text: string, min: number): number => {
    const v = Number(text);
    if (!Number.isInteger(v) || v < min) fail(`--${name} ${text}: expected a whole number ≥ ${min}`);
    return v;
  };
  const provider = values.provider as ExecutionProviderName;
  if (!['cpu', 'webgpu', 'cuda'].includes(provider)) fail(`--provider ${provider}: use cpu, webgpu or cuda`);
  const size = values.size === undefined ? undefined : whole('size', values.size, 64);
  if (size !== undefined && size % 64 !== 0) fail('--size must be a multiple of 64');
  const sampler = values.sampler as SamplerName | undefined;
  if (sampler !== undefined && !(SAMPLERS as readonly string[]).includes(sampler)) {
    fail(`--sampler ${sampler}: use one of ${SAMPLERS.join(', ')}`);
  }
  return {
    sampler,
    provider,
    generations: whole('generations', values.generations, 2),
    steps: whole('steps', values.steps, 1),
    model: values.model,
    threads: whole('threads', values.threads, 0),
    size,
    batchCompare: !values['no-batch-compare'],
    gridSteps: whole('grid-steps', values['grid-steps'], 1),
    proxy: values['proxy-only'] ? 'only' : values['no-proxy'] ? 'skip' : 'also',
    proxyGenerations: whole('proxy-generations', values['proxy-generations'], 3),
    fullsize:
      values.fullsize === undefined
        ? undefined
        : {
            modelDir: values.fullsize,
            before: values['fullsize-before'],
            size: whole('fullsize-size', values['fullsize-size'], 64),
            steps: whole('fullsize-steps', values['fullsize-steps'], 1),
            optionsOnly: values['fullsize-options'],
          },
  };
}

/** Least-squares slope of samples against their index. */
function slope(ys: number[]): number {
  const n = ys.length;
  if (n < 2) return 0;
  const meanX = (n - 1) / 2;
  const meanY = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  ys.forEach((y, x) => {
    num += (x - meanX) * (y - meanY);
    den += (x - meanX) ** 2;
  });
  return num / den;
}

const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MB`;

function row(figure: string, value: string, goal: string, ratio: string): void {
  process.stdout.write(`${figure.padEnd(40)} ${value.padStart(22)}   ${goal.padEnd(16)} ${ratio}\n`);
}

async function timeJob(engine: WorkerEngine, req: GenerateRequest, repeats: number): Promise<number> {
  await engine.generate(req); // first run at a new batch shape pays for onnxruntime's planning
  const t0 = performance.now();
  for (let i = 0; i < repeats; i++) await engine.generate({ ...req, seed: req.seed + i });
  return (performance.now() - t0) / repeats;
}

const PROXY_GOAL_MS = 0.3;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Goal 3 of issue 12: the engine's own time per step, outside onnxruntime's session.run, on a
 * tiny UNet with SD 1.5's input shapes, for every sampler × export dtype. Each figure is the
 * median over all steps, with the fastest step beside it (on a shared machine a busy neighbour
 * inflates single steps; the median and minimum show what the engine itself costs).
 */
async function proxyTable(args: Args): Promise<void> {
  const scratch = await mkdtemp(path.join(tmpdir(), 'bench-engine-proxy-'));
  const dtypes = ['float32', 'float16'] as const;
  const steps = 20;
  try {
    for (const dtype of dtypes) {
      await writeTinyModel(path.join(scratch, `proxy-${dtype}`), {
        generation: 'optimum-new',
        unet: 'smooth',
        dtype,
        sampleSize: 64,
        hiddenDim: 768,
        vaeEncoder: false,
      });
    }
    const engine = createEngine({
      modelsDir: scratch,
      providers: args.provider === 'cpu' ? ['cpu'] : [args.provider, 'cpu'],
      threads: args.threads,
      profileSessions: true,
      imagesPerBatch: 1,
    });
    process.stdout.write(
      `per step outside onnxruntime, tiny-UNet proxy (512x512 → 4x64x64 latents, 77x768 conditioning, ` +
        `${steps} steps, CFG 7 → UNet batch 2; Turbo: no CFG, batch 1), median over the steps of ${args.proxyGenerations} generations\n`,
    );
    row('sampler × dtype', 'outside / step: median', 'goal', 'median/goal');
    try {
      for (const dtype of dtypes) {
        for (const sampler of SAMPLERS) {
          const req: GenerateRequest = {
            model: `proxy-${dtype}`,
            prompt: 'a lighthouse on a cliff at dusk, oil painting',
            negativePrompt: 'blurry',
            width: 512,
            height: 512,
            steps,
            guidance: 7,
            sampler,
            seed: 1,
            count: 1,
          };
          await engine.generate({ ...req, steps: 2 }); // loads the model and plans this shape
          const outside: number[] = [];
          const start = await engine.stats();
          for (let g = 0; g < args.proxyGenerations; g++) {
            const before = await engine.stats();
            await engine.generate({ ...req, seed: g }, { onStep: () => undefined });
            const after = await engine.stats();
            outside.push(...(after.recentOutsideMs ?? []).slice(-(after.steps - before.steps)));
          }
          const ms = median(outside);
          const min = Math.min(...outside);
          const end = await engine.stats();
          const ortMean = (end.ortMs - start.ortMs) / (end.steps - start.steps);
          const waitMean = (end.noiseWaitMs - start.noiseWaitMs) / (end.steps - start.steps);
          const label = `  ${sampler}, ${dtype === 'float32' ? 'fp32' : 'fp16 export'}`;
          row(label, `${ms.toFixed(3)} ms (min ${min.toFixed(3)})`, `≤ ${PROXY_GOAL_MS} ms`, `${(ms / PROXY_GOAL_MS).toFixed(2)}   (session.run ${ortMean.toFixed(2)} ms${waitMean > 0 ? `; waiting for the noise thread ${waitMean.toFixed(3)} ms` : ''})`);
        }
      }
    } finally {
      await engine.close();
    }
    process.stdout.write('\n');
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = parse();
  if (args.fullsize) {
    if (args.fullsize.optionsOnly) await optionsTable(args.fullsize.modelDir, args.fullsize.size);
    else await fullsizeTable(args.fullsize);
    return;
  }
  if (args.proxy !== 'skip') await proxyTable(args);
  if (args.proxy === 'only') return;
  let scratch: string | undefined;
  let modelsDir: string;
  let name: string;
  if (args.model) {
    const dir = path.resolve(args.model);
    modelsDir = path.dirname(dir);
    name = path.basename(dir);
  } else {
    scratch = await mkdtemp(path.join(tmpdir(), 'bench-engine-'));
    modelsDir = scratch;
    name = 'synthetic-sd';
    // SD 1.x-like IO (4×64×64 latents, 77×768 conditioning) with a body of 3×3 convolutions and
    // one cross-attention, so a step costs real compute; not SD's 860 M parameters.
    await writeTinyModel(path.join(scratch, name), {
      generation: 'optimum-new',
      unet: 'smooth',
      sampleSize: 64,
      hiddenDim: 768,
      unetBody: { channels: 128, layers: 4, attention: true },
    });
  }

  const open = (imagesPerBatch: number): WorkerEngine =>
    createEngine({
      modelsDir,
      providers: args.provider === 'cpu' ? ['cpu'] : [args.provider, 'cpu'],
      threads: args.threads,
      warmup: true,
      warmupOnCpu: true,
      profileSessions: true,
      imagesPerBatch,
      log: {
        info: () => undefined,
        warn: (_o, msg) => process.stderr.write(`warning: ${msg}\n`),
      },
    });

  const engine = open(1);
  try {
    const scan = await engine.scanModels();
    const info: ModelInfo | undefined = scan.models.find((m) => m.name === name);
    if (!info) {
      const problem = scan.problems.find((p) => p.name === name);
      fail(problem ? `${name}: ${problem.reason}` : `no model folder ${name} in ${modelsDir}`);
    }
    const side = args.size;
    const req: GenerateRequest = {
      model: name,
      prompt: 'a lighthouse on a cliff at dusk, oil painting',
      negativePrompt: 'blurry',
      width: side ?? info.nativeWidth,
      height: side ?? info.nativeHeight,
      steps: args.steps,
      guidance: info.defaultGuidance > 1 ? info.defaultGuidance : 7,
      sampler: args.sampler ?? (info.defaultSampler === 'Turbo' ? 'Euler a' : info.defaultSampler),
      seed: 1,
      count: 1,
    };

    process.stdout.write(
      `engine bench: ${name} (${info.generation}, ${info.dtype}), ${req.width}x${req.height}, ${req.steps} steps ` +
        `${req.sampler}, CFG ${req.guidance} (UNet batch 2), provider ${args.provider}, ${args.generations} generations\n`,
    );
    const tLoad = performance.now();
    await engine.generate({ ...req, steps: 1 });
    process.stdout.write(`model load + warm-up + first picture: ${((performance.now() - tLoad) / 1000).toFixed(2)} s on ${engine.provider()}\n`);

    // Warm-up generations before the RSS baseline: allocator arenas and caches settle first.
    const warm = Math.min(5, args.generations);
    for (let i = 0; i < warm; i++) await engine.generate({ ...req, seed: 1000 + i });
    const before = await engine.stats();
    const rssStart = process.memoryUsage().rss;

    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const rssSamples: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < args.generations; i++) {
      await engine.generate({ ...req, seed: i, previews: i % 2 === 0 }, { onStep: () => undefined });
      rssSamples.push(process.memoryUsage().rss);
      if ((i + 1) % 10 === 0) process.stderr.write(`  ${i + 1}/${args.generations} generations, RSS ${mb(process.memoryUsage().rss)}\n`);
    }
    const wall = performance.now() - t0;
    delay.disable();
    const rssEnd = process.memoryUsage().rss;
    const after = await engine.stats();

    const steps = after.steps - before.steps;
    const stepMs = (after.stepMs - before.stepMs) / steps;
    const ortMs = (after.ortMs - before.ortMs) / steps;
    const outside = (stepMs - ortMs) / stepMs;
    const p99 = delay.percentile(99) / 1e6;
    // RSS moves with V8's garbage collection, so the end-minus-start difference is noisy; the
    // least-squares trend over every generation says whether memory keeps growing.
    const trend = slope(rssSamples) * args.generations;
    const growth = trend / rssStart;

    process.stdout.write('\n');
    row('figure', 'value', 'goal', 'value/goal');
    row('per-step wall time', `${stepMs.toFixed(2)} ms`, '—', '—');
    row('  of which inside session.run', `${ortMs.toFixed(2)} ms`, '—', '—');
    row('  of which outside it (JS, tensors, fp16)', `${(stepMs - ortMs).toFixed(3)} ms`, '—', '—');
    row('share of step time outside onnxruntime', `${(outside * 100).toFixed(2)} %`, '< 2 %', (outside / 0.02).toFixed(2));
    row('main event-loop delay p99', `${p99.toFixed(1)} ms`, '< 50 ms', (p99 / 50).toFixed(2));
    row('main event-loop delay max', `${(delay.max / 1e6).toFixed(1)} ms`, '—', '—');
    row(
      `RSS trend over ${args.generations} generations`,
      `${trend >= 0 ? '+' : ''}${mb(trend)} (${(growth * 100).toFixed(1)} %)`,
      'flat (< 5 %)',
      (Math.max(0, growth) / 0.05).toFixed(2),
    );
    row('RSS start → end (min … max)', `${mb(rssStart)} → ${mb(rssEnd)}`, '—', '—');
    row('', `(${mb(Math.min(...rssSamples))} … ${mb(Math.max(...rssSamples))})`, '', '');
    row('wall time per generation', `${(wall / args.generations).toFixed(0)} ms`, '—', '—');

    if (args.batchCompare) {
      const job: GenerateRequest = { ...req, count: 4, steps: args.gridSteps };
      const oneByOne = await timeJob(engine, job, 2);
      const batchedEngine = open(4);
      let batched: number;
      try {
        await batchedEngine.generate({ ...req, steps: 1 });
        batched = await timeJob(batchedEngine, job, 2);
      } finally {
        await batchedEngine.close();
      }
      process.stdout.write('\n');
      row(`4-picture job, ${job.steps} steps: one by one`, `${oneByOne.toFixed(0)} ms`, '—', '—');
      row(`4-picture job, ${job.steps} steps: one batch`, `${batched.toFixed(0)} ms`, '—', `${(batched / oneByOne).toFixed(2)} of one-by-one`);
    }
  } finally {
    await engine.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:engine: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
