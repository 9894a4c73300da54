// npm run models -- list [--models DIR]
// npm run models -- prepare NAME|FILE [--models DIR] [--cache DIR] [--tokenizer DIR]
//
// `list` shows every model under the models directory (family, native size, dtype, source) with
// the LoRAs and embeddings that fit it, and every file that cannot be used with the reason.
// `prepare` turns a single-file checkpoint into its cached model folder (what first use would
// do), with a progress bar. Refusals are one line on stderr and a non-zero exit.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { familyLabel, modelFamilyKey, scanCatalogue, type Catalogue } from './checkpoint/catalogue.js';
import { CheckpointError } from './checkpoint/errors.js';
import { prepareDiffusersFolder } from './checkpoint/diffusers-folder.js';
import { prepareCheckpoint, type PrepareProgress } from './checkpoint/prepare.js';

const USAGE = `usage: npm run models -- list [--models DIR]
       npm run models -- prepare NAME|FILE [--models DIR] [--cache DIR] [--tokenizer DIR]
  --models DIR     where models live (default ./models)
  --cache DIR      where prepared model folders go (default ./data/model-cache)
  --tokenizer DIR  a CLIP tokenizer folder to copy into the prepared model (checkpoints carry none)`;

class UsageError extends Error {}

export function formatCatalogue(cat: Catalogue): string {
  const lines: string[] = [];
  if (cat.models.length === 0) lines.push('No usable models found.');
  for (const m of cat.models) {
    lines.push(`${m.name}  ${m.family}  ${m.nativeSize}  ${m.dtype}  ${m.source}`);
    const fam = modelFamilyKey(m);
    const loras = cat.loras.filter((l) => l.family === fam).map((l) => l.name);
    const embeddings = cat.embeddings.filter((e) => e.family === fam).map((e) => e.name);
    if (loras.length > 0) lines.push(`    LoRAs: ${loras.join(', ')}`);
    if (embeddings.length > 0) lines.push(`    embeddings: ${embeddings.join(', ')}`);
  }
  const unmatched = [...cat.loras, ...cat.embeddings].filter((a) => !cat.models.some((m) => modelFamilyKey(m) === a.family));
  for (const a of unmatched) lines.push(`${a.name}: for ${familyLabel(a.family)} models; none installed`);
  for (const v of cat.vaes) lines.push(`${v.name}: VAE file (pairing with checkpoints is not supported yet)`);
  for (const r of cat.refused) lines.push(`${r.name}: cannot be used: ${r.reason}`);
  return lines.join('\n');
}

/** NAME → models/NAME.safetensors or models/checkpoints/NAME.safetensors; an existing path is used as is. */
export function locateCheckpoint(nameOrFile: string, modelsDir: string): string {
  if (existsSync(nameOrFile)) return nameOrFile;
  for (const candidate of [path.join(modelsDir, nameOrFile), path.join(modelsDir, `${nameOrFile}.safetensors`), path.join(modelsDir, 'checkpoints', `${nameOrFile}.safetensors`)]) {
    if (existsSync(candidate)) return candidate;
  }
  throw new UsageError(`no checkpoint "${nameOrFile}" in ${modelsDir} or ${path.join(modelsDir, 'checkpoints')}`);
}

const PART_LABEL: Record<string, string> = { text_encoder: 'text encoder', unet: 'UNet', vae_decoder: 'VAE decoder', vae_encoder: 'VAE encoder' };

/** A one-line progress bar, redrawn in place on a terminal and printed once per stage otherwise. */
export function progressLine(p: PrepareProgress, width = 30): string {
  const [done, total, label] = p.stage === 'hashing' ? [p.bytesDone, p.bytesTotal, 'hashing'] : [p.tensorsDone, p.tensorsTotal, PART_LABEL[p.part] ?? p.part];
  return `${label.padEnd(12)} ${progressBar(total === 0 ? 1 : done / total, width)}`;
}

/** `[#######-------]  50%` */
export function progressBar(fraction: number, width = 30): string {
  const f = Math.min(1, Math.max(0, fraction));
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(f * 100)).padStart(3)}%`;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { models: { type: 'string' }, cache: { type: 'string' }, tokenizer: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const [command, target, ...extra] = positionals;
  if (values.help || command === undefined) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const modelsDir = path.resolve(values.models ?? 'models');
  if (command === 'list') {
    if (!existsSync(modelsDir)) throw new UsageError(`the models directory ${modelsDir} does not exist`);
    console.log(formatCatalogue(await scanCatalogue(modelsDir)));
    return 0;
  }
  if (command !== 'prepare') throw new UsageError(`unknown command "${command}"; use list or prepare`);
  if (target === undefined || extra.length > 0) throw new UsageError('prepare takes one checkpoint name or file, or a diffusers folder');
  const file = locateCheckpoint(target, modelsDir);
  const tty = process.stderr.isTTY;
  let lastStage = '';
  const started = performance.now();
  // A folder is a diffusers model (unet/ + config.json …); a file a single-file checkpoint.
  const prepare = statSync(file).isDirectory() ? prepareDiffusersFolder : prepareCheckpoint;
  const prepared = await prepare(file, {
    cacheDir: path.resolve(values.cache ?? path.join('data', 'model-cache')),
    ...(values.tokenizer === undefined ? {} : { tokenizerDir: values.tokenizer }),
    onProgress: (p) => {
      const stage = p.stage === 'hashing' ? 'hashing' : p.part;
      const finished = p.stage === 'hashing' ? p.bytesDone === p.bytesTotal : p.tensorsDone === p.tensorsTotal;
      if (tty) {
        if (stage !== lastStage && lastStage !== '') process.stderr.write('\n');
        process.stderr.write(`\r${progressLine(p)}`);
      } else if (finished) process.stderr.write(`${progressLine(p)}\n`);
      lastStage = stage;
    },
  });
  if (tty && lastStage !== '') process.stderr.write('\n');
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`${path.basename(file)}: ${familyLabel(prepared.info.family)} ${prepared.info.nativeSize}², ${prepared.reused ? 'already prepared' : `prepared in ${seconds} s`} → ${prepared.dir}`);
  return 0;
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === path.resolve(import.meta.filename);
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      // One clear line, never a stack trace.
      const message = err instanceof UsageError || err instanceof CheckpointError ? err.message : `failed: ${(err as Error).message}`;
      console.error(`models: ${message}`);
      if (err instanceof UsageError) console.error(USAGE);
      process.exit(1);
    },
  );
}
