// `npm run imagine -- --model DIR "a prompt" -o out.png`: the engine on its own, without the bot.
// Writes PNGs that carry AUTOMATIC1111's `parameters` text chunk. Bad input gets one line on
// stderr and exit code 2; engine failures exit 1; Ctrl-C cancels between steps (exit 130).
import { accessSync, constants as fsConstants, existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { checkpointName, WEIGHTS_FILE } from './checkpoint-models.js';
import { scanCatalogue } from './checkpoint/catalogue.js';
import { createEngine } from './index.js';
import { formatCatalogue, progressBar } from './models-cli.js';
import { parseLoraFlag } from './job-loras.js';
import { DEMO_MODELS_DIR } from './registry.js';
import { insertTextChunk } from './png.js';
import {
  EngineError,
  SAMPLERS,
  type ExecutionProviderName,
  type GenerateRequest,
  type InitImage,
  type LoraRequest,
  type ModelInfo,
  type SamplerName,
} from './types.js';

const USAGE = `Usage: npm run imagine -- [--model <folder or name>] "a prompt" [options]

  --model, -m <dir|name>     a model folder or .safetensors checkpoint, or a model name under
                             --models-dir (default: the first
                             model there; with none installed, the bundled demo model)
  --models-dir <dir>         where model folders and checkpoint files live (default: ./models)
  --list                     list the installed models (family, size, dtype, source), the LoRAs and
                             embeddings that fit each, and the files that cannot be used
  --cache-dir <dir>          where checkpoints are prepared on first use (default: ./data/model-cache)
  --tokenizer <dir>          a CLIP tokenizer folder for checkpoints (default: <models-dir>/tokenizer,
                             else an installed ONNX model's, else the bundled CLIP one)
  --negative <text>          negative prompt
  --seed <n>                 0..4294967295 (default: random; printed)
  --steps <n>                denoising steps (default: the model's)
  --sampler <name>           ${SAMPLERS.map((s) => `"${s}"`).join(', ')} (default: the model's)
  --cfg <g>                  guidance scale; 1 or less turns guidance off (default: the model's)
  --size <W>x<H>             multiples of 64 (default: the model's native size, or the init picture's)
  --n <count>                pictures to draw; seeds seed, seed+1, … (default 1)
  --variation-seed <n>       AUTOMATIC1111 variation seed
  --variation-strength <f>   0..1 (default 0.1 when --variation-seed is given)
  --lora <name:weight>       apply a LoRA from models/loras (repeatable; name:te:unet for two
                             weights); <lora:name:weight> in the prompt works too
  --init <png|jpg>           start from a picture (img2img)
  --strength <f>             how much of the schedule is re-run for --init, 0..1 (default 0.75)
  --provider <list>          execution providers in order, e.g. cuda,cpu (default: cpu)
  --threads <n>              CPU threads for onnxruntime (default: onnxruntime decides)
  --output, -o <file.png>    output file; with --n > 1, out-1.png, out-2.png, … (default: out.png)
  --quiet, -q                no progress on stderr
  --help, -h                 this text
`;

/** Progress lines are padded to this width so a shorter one overwrites a longer one. */
const STAGE_LINE_WIDTH = 80;

/** Input the user can fix: reported as one line, exit code 2. */
class UsageError extends Error {}

/** Whether a `\rstep i/n` progress line is open on stderr (an error then starts a new line). */
let midLine = false;

const OPTIONS = {
  model: { type: 'string', short: 'm' },
  'models-dir': { type: 'string' },
  list: { type: 'boolean' },
  'cache-dir': { type: 'string' },
  tokenizer: { type: 'string' },
  negative: { type: 'string' },
  seed: { type: 'string' },
  steps: { type: 'string' },
  sampler: { type: 'string' },
  cfg: { type: 'string' },
  size: { type: 'string' },
  n: { type: 'string' },
  'variation-seed': { type: 'string' },
  'variation-strength': { type: 'string' },
  init: { type: 'string' },
  lora: { type: 'string', multiple: true },
  strength: { type: 'string' },
  provider: { type: 'string' },
  threads: { type: 'string' },
  output: { type: 'string', short: 'o' },
  quiet: { type: 'boolean', short: 'q' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface CliArgs {
  values: {
    [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : (typeof OPTIONS)[K] extends { multiple: true } ? string[] : string;
  };
  prompt: string;
}

/**
 * `--seed -1` would make parseArgs refuse the value as "ambiguous" (it looks like a flag); a
 * negative number after a value-taking flag is that flag's value, so the range check below can
 * say what is allowed.
 */
function joinNegativeValues(argv: string[]): string[] {
  const valueFlags = new Map<string, string>();
  for (const [name, o] of Object.entries(OPTIONS)) {
    if (o.type !== 'string') continue;
    valueFlags.set(`--${name}`, name);
    if ('short' in o) valueFlags.set(`-${o.short}`, name);
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') return [...out, ...argv.slice(i)];
    const name = valueFlags.get(arg);
    const next = argv[i + 1];
    if (name !== undefined && next !== undefined && /^-\.?\d/.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

function parseCli(argv: string[]): CliArgs | 'help' {
  let parsed;
  try {
    parsed = parseArgs({ args: joinNegativeValues(argv), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    // parseArgs' messages name the flag ("Unknown option '--colour'") and go on with hint
    // sentences, some on further lines: keep the first sentence, so the user gets one line.
    const first = (err as Error).message.split(/\.(?:\s|$)/)[0]?.trim();
    throw new UsageError(first || 'bad arguments');
  }
  if (parsed.values.help) return 'help';
  if (parsed.values.list) return { values: parsed.values, prompt: '' };
  if (parsed.positionals.length === 0) throw new UsageError('no prompt given (put it in quotes after the options)');
  return { values: parsed.values, prompt: parsed.positionals.join(' ') };
}

function integer(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text.trim());
  if (text.trim() === '' || !Number.isInteger(v) || v < min || v > max) {
    throw new UsageError(`--${flag} ${JSON.stringify(text)} is not a whole number from ${min} to ${max}`);
  }
  return v;
}

function decimal(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const v = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(v) || v < min || v > max) {
    throw new UsageError(`--${flag} ${JSON.stringify(text)} is not a number from ${min} to ${max}`);
  }
  return v;
}

function sizeOf(text: string | undefined): { width: number; height: number } | undefined {
  if (text === undefined) return undefined;
  const m = /^\s*(\d+)\s*[x×]\s*(\d+)\s*$/i.exec(text);
  if (!m) throw new UsageError(`--size ${JSON.stringify(text)} is not WIDTHxHEIGHT, e.g. 512x768`);
  const width = Number(m[1]);
  const height = Number(m[2]);
  for (const v of [width, height]) {
    if (v < 64 || v > 4096 || v % 64 !== 0) {
      throw new UsageError(`--size ${text}: each side must be a multiple of 64 from 64 to 4096`);
    }
  }
  return { width, height };
}

function samplerOf(text: string | undefined): SamplerName | undefined {
  if (text === undefined) return undefined;
  const key = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]/g, '');
  const found = SAMPLERS.find((s) => key(s) === key(text));
  if (!found) throw new UsageError(`--sampler ${JSON.stringify(text)} is unknown; use one of ${SAMPLERS.join(', ')}`);
  return found;
}

function providersOf(text: string | undefined): ExecutionProviderName[] {
  if (text === undefined) return ['cpu'];
  const known: ExecutionProviderName[] = ['cuda', 'webgpu', 'cpu'];
  const list = text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  for (const p of list) {
    if (!known.includes(p as ExecutionProviderName)) {
      throw new UsageError(`--provider ${JSON.stringify(p)} is unknown; use one or more of ${known.join(', ')}`);
    }
  }
  if (list.length === 0) throw new UsageError('--provider needs at least one of cuda, webgpu, cpu');
  return list as ExecutionProviderName[];
}

/** `--model` is a folder path when it names an existing directory, else a name under --models-dir. */
function locateModel(model: string, modelsDir: string | undefined): { modelsDir: string; name: string } {
  const asPath = path.resolve(model);
  if (existsSync(asPath) && statSync(asPath).isDirectory() && existsSync(path.join(asPath, 'model_index.json'))) {
    return { modelsDir: path.dirname(asPath), name: path.basename(asPath) };
  }
  if (existsSync(asPath) && statSync(asPath).isFile() && WEIGHTS_FILE.test(asPath)) {
    return { modelsDir: path.dirname(asPath), name: checkpointName(asPath) };
  }
  const dir = path.resolve(modelsDir ?? 'models');
  if (model.includes('/') || model.includes(path.sep)) {
    if (!existsSync(asPath)) throw new UsageError(`--model ${model}: no such folder`);
    throw new UsageError(`--model ${model}: not a model folder (model_index.json is missing)`);
  }
  return { modelsDir: dir, name: model };
}

async function readInit(file: string, size: { width: number; height: number } | undefined, strength: number): Promise<InitImage> {
  if (!existsSync(file)) throw new UsageError(`--init ${file}: no such file`);
  let image;
  try {
    image = sharp(file);
    const meta = await image.metadata();
    const target = size ?? {
      width: Math.max(64, Math.floor((meta.width ?? 0) / 64) * 64),
      height: Math.max(64, Math.floor((meta.height ?? 0) / 64) * 64),
    };
    const { data, info } = await image
      .resize(target.width, target.height, { fit: 'cover' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`expected 3 channels, got ${info.channels}`);
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, strength };
  } catch (err) {
    throw new UsageError(`--init ${file}: not a readable picture (${(err as Error).message})`);
  }
}

function lorasOf(values: string[] | undefined): LoraRequest[] {
  try {
    return (values ?? []).map(parseLoraFlag);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Fails before any drawing when the output file could not be written. */
function checkOutput(given: string): string {
  const output = path.resolve(given);
  const folder = path.dirname(output);
  if (!existsSync(folder)) throw new UsageError(`--output ${given}: folder ${folder} does not exist`);
  if (!statSync(folder).isDirectory()) throw new UsageError(`--output ${given}: ${folder} is not a folder`);
  if (existsSync(output) && statSync(output).isDirectory()) {
    throw new UsageError(`--output ${given} is a folder; give a file name, e.g. ${path.join(given, 'out.png')}`);
  }
  try {
    accessSync(folder, fsConstants.W_OK);
  } catch {
    throw new UsageError(`--output ${given}: folder ${folder} is not writable`);
  }
  return output;
}

async function writeOutput(file: string, data: Buffer): Promise<void> {
  try {
    await writeFile(file, data);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new UsageError(`cannot write ${file} (${code})`);
  }
}

function outputNames(output: string, count: number): string[] {
  if (count === 1) return [output];
  const ext = path.extname(output) || '.png';
  const base = output.slice(0, output.length - path.extname(output).length);
  return Array.from({ length: count }, (_, i) => `${base}-${i + 1}${ext}`);
}

async function main(argv: string[]): Promise<number> {
  const args = parseCli(argv);
  if (args === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const v = args.values;
  if (v.list) {
    const modelsDir = path.resolve(v['models-dir'] ?? 'models');
    if (!existsSync(modelsDir)) throw new UsageError(`the models directory ${modelsDir} does not exist`);
    process.stdout.write(`${formatCatalogue(await scanCatalogue(modelsDir))}\n`);
    return 0;
  }
  const size = sizeOf(v.size);
  const seed = integer('seed', v.seed, 0, 0xffffffff) ?? Math.floor(Math.random() * 0x100000000);
  const steps = integer('steps', v.steps, 1, 500);
  const guidance = decimal('cfg', v.cfg, 0, 100);
  const sampler = samplerOf(v.sampler);
  const count = integer('n', v.n, 1, 16) ?? 1;
  const variationSeed = integer('variation-seed', v['variation-seed'], 0, 0xffffffff);
  const variationStrength = decimal('variation-strength', v['variation-strength'], 0, 1);
  if (variationStrength !== undefined && variationSeed === undefined) {
    throw new UsageError('--variation-strength needs --variation-seed');
  }
  const strength = decimal('strength', v.strength, 0, 1);
  if (strength !== undefined && !v.init) throw new UsageError('--strength needs --init');
  if (strength === 0) throw new UsageError('--strength must be above 0');
  const loras = lorasOf(v.lora);
  const providers = providersOf(v.provider);
  const threads = integer('threads', v.threads, 0, 1024);
  const output = checkOutput(v.output ?? 'out.png');
  const located = v.model ? locateModel(v.model, v['models-dir']) : { modelsDir: path.resolve(v['models-dir'] ?? 'models'), name: undefined };
  const init = v.init ? await readInit(v.init, size, strength ?? 0.75) : undefined;

  const quiet = v.quiet === true;
  const engine = createEngine({
    modelsDir: located.modelsDir,
    fallbackModelsDir: DEMO_MODELS_DIR,
    providers,
    ...(threads !== undefined ? { threads } : {}),
    modelCacheDir: path.resolve(v['cache-dir'] ?? path.join('data', 'model-cache')),
    ...(v.tokenizer !== undefined ? { tokenizerDir: path.resolve(v.tokenizer) } : {}),
    log: {
      info: () => undefined,
      warn: (_obj, msg) => process.stderr.write(`warning: ${msg}\n`),
    },
  });
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const scan = await engine.scanModels();
    const name = located.name ?? scan.models[0]?.name;
    if (name === undefined) throw new UsageError(`no usable model in ${located.modelsDir}; see README "Models"`);
    const info: ModelInfo | undefined = scan.models.find((m) => m.name === name);
    if (!info) {
      const problem = scan.problems.find((p) => p.name === name);
      if (problem) throw new UsageError(`model ${name}: ${problem.reason}`);
      const names = scan.models.map((m) => m.name);
      throw new UsageError(
        `model ${JSON.stringify(name)} not found in ${located.modelsDir}` +
          (names.length ? `; available: ${names.join(', ')}` : ''),
      );
    }
    const request: GenerateRequest = {
      model: info.name,
      prompt: args.prompt,
      negativePrompt: v.negative ?? '',
      width: init?.width ?? size?.width ?? info.nativeWidth,
      height: init?.height ?? size?.height ?? info.nativeHeight,
      steps: steps ?? info.defaultSteps,
      guidance: guidance ?? info.defaultGuidance,
      sampler: sampler ?? info.defaultSampler,
      seed,
      count,
      ...(variationSeed !== undefined ? { variation: { seed: variationSeed, strength: variationStrength ?? 0.1 } } : {}),
      ...(init ? { init } : {}),
      ...(loras.length > 0 ? { loras } : {}),
    };
    // Said even with --quiet: a newcomer must learn why the pictures are tiny emoji.
    if (scan.notice) process.stderr.write(`note: ${scan.notice}\n`);
    if (!quiet) {
      process.stderr.write(
        `${info.name}: ${request.width}x${request.height}, ${request.steps} steps, ${request.sampler}, ` +
          `CFG ${request.guidance}, seed ${seed}${count > 1 ? ` (+0…${count - 1})` : ''}\n`,
      );
    }
    const result = await engine.generate(request, {
      signal: controller.signal,
      ...(quiet
        ? {}
        : {
            onStep: ({ step, total }) => {
              process.stderr.write(`\rstep ${step}/${total}`.padEnd(STAGE_LINE_WIDTH));
              midLine = true;
            },
            onStage: (s) => {
              const what = s.loras?.length ? `${s.model} with LoRA ${s.loras.join(', ')}` : s.model;
              const line =
                s.stage === 'loading' ? `loading model ${what}…` : `preparing model ${what} (first use only) ${progressBar(s.fraction ?? 0)}`;
              process.stderr.write(`\r${line}`.padEnd(STAGE_LINE_WIDTH));
              midLine = true;
            },
          }),
    });
    midLine = false;
    if (!quiet) process.stderr.write(`${`\rdone in ${(result.timing.totalMs / 1000).toFixed(1)} s on ${result.provider}`.padEnd(STAGE_LINE_WIDTH)}\n`);
    for (const t of [result.truncation.prompt, result.truncation.negativePrompt]) {
      if (t) process.stderr.write(`warning: the prompt is too long (${t.tokenLimit ?? 75} tokens are read); dropped: ${t.dropped}\n`);
    }
    const names = outputNames(output, result.images.length);
    for (const [i, image] of result.images.entries()) {
      const png = await sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } })
        .png()
        .toBuffer();
      await writeOutput(names[i]!, insertTextChunk(png, 'parameters', image.infoText));
      process.stdout.write(`${names[i]} (seed ${image.seed})\n`);
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    await engine.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`imagine: ${err.message} (see --help)\n`);
      process.exitCode = 2;
    } else if (err instanceof EngineError) {
      process.stderr.write(`${midLine ? '\n' : ''}imagine: ${err.message}\n`);
      process.exitCode = err.code === 'cancelled' ? 130 : err.code === 'internal' || err.code === 'worker_crashed' ? 1 : 2;
    } else {
      process.stderr.write(`${midLine ? '\n' : ''}imagine: unexpected failure: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
