// First use of a checkpoint: check what it is, then build (or reuse) its model folder in the
// cache, keyed by the file's content hash and the version of the graph builders — a renamed copy
// reuses the entry, an edited file or a changed builder gets a new one.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { cachedBuild } from './cache.js';
import type { CheckpointInfo } from './detect.js';
import { CheckpointError } from './errors.js';
import { inspectWeightsFile } from './inspect.js';
import { formKey, graphFormFor } from './graph-form.js';
import { writeModelFolder, type FolderProgress } from './model-folder.js';
import type { GraphForm } from '../onnx-build/layers.js';
import type { ExecutionProviderName } from '../types.js';
import { openWeightsFile } from './pickle-guard.js';

/** Bump when a graph builder's output changes, so cached folders are rebuilt.
 * 2: text encoders take the embedding override inputs. */
export const GRAPH_VERSION = 2;

export type PrepareProgress = { stage: 'hashing'; bytesDone: number; bytesTotal: number } | ({ stage: 'building' } & FolderProgress);

export interface PreparedCheckpoint {
  dir: string;
  reused: boolean;
  sha256: string;
  info: CheckpointInfo;
  /** The graph form the folder was built in (part of its cache key). */
  form: GraphForm;
}

export async function sha256File(path: string, onBytes?: (done: number, total: number) => void): Promise<string> {
  const total = (await stat(path)).size;
  const hash = createHash('sha256');
  let done = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) {
    hash.update(chunk as Buffer);
    done += (chunk as Buffer).length;
    onBytes?.(done, total);
  }
  return hash.digest('hex');
}

interface HashMemoEntry {
  size: number;
  mtimeMs: number;
  ino: number;
  sha256: string;
}

/**
 * sha256 of `path`, remembered in `<cacheDir>/hashes.json` by path, size, mtime and inode, so a
 * start with unchanged files reads no weights (re-hashing a 7 GB SDXL file takes seconds). Any
 * change to the file's size, mtime or identity hashes it again.
 */
export async function memoizedSha256(path: string, cacheDir: string, onBytes?: (done: number, total: number) => void): Promise<string> {
  const memoFile = join(cacheDir, 'hashes.json');
  const key = resolve(path);
  let memo: Record<string, HashMemoEntry> = {};
  try {
    memo = JSON.parse(await readFile(memoFile, 'utf8')) as Record<string, HashMemoEntry>;
  } catch {
    // Missing or unreadable: start afresh.
  }
  const s = await stat(path);
  const known = memo[key];
  if (known !== undefined && known.size === s.size && known.mtimeMs === s.mtimeMs && known.ino === s.ino) return known.sha256;
  const sha256 = await sha256File(path, onBytes);
  memo[key] = { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, sha256 };
  await mkdir(cacheDir, { recursive: true });
  const tmp = `${memoFile}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(memo));
  await rename(tmp, memoFile);
  return sha256;
}

/** Refuses what the builders cannot turn into a working SD 1.x/2.x/SDXL model folder. */
export function assertBuildable(info: Awaited<ReturnType<typeof inspectWeightsFile>>, label: string): asserts info is CheckpointInfo & { family: 'sd1' | 'sd2' | 'sdxl' } {
  if (info.kind !== 'checkpoint') {
    const what = info.kind === 'unknown' ? info.reason : `a ${info.kind === 'vae' ? 'VAE' : info.kind === 'lora' ? 'LoRA' : 'textual-inversion embedding'} file`;
    throw new CheckpointError('unknown-family', `${label} is not a Stable Diffusion checkpoint: ${what}.`);
  }
  if (!info.supported) throw new CheckpointError('unsupported-family', `${label} cannot be used: ${info.reason ?? 'unsupported'}.`);
  if (info.family !== 'sd1' && info.family !== 'sd2' && info.family !== 'sdxl') {
    throw new CheckpointError('unsupported-family', `${label} is an ${info.family.toUpperCase()} checkpoint; the engine runs SD 1.x/2.x and SDXL checkpoints.`);
  }
  if (!info.parts.vae) throw new CheckpointError('missing-tensor', `${label} has no VAE; checkpoints without one are not supported yet.`);
}

export interface PrepareOptions {
  cacheDir: string;
  /** A CLIP tokenizer folder to copy in (checkpoints carry none). */
  tokenizerDir?: string;
  onProgress?: (p: PrepareProgress) => void;
  signal?: AbortSignal;
  /** Providers the model will run on (default CPU): they choose the graph form (graph-form.ts). */
  providers?: readonly ExecutionProviderName[];
  /** An explicit graph form, overriding the providers' choice (benchmarks, tests). */
  form?: GraphForm;
}

export async function prepareCheckpoint(file: string, opts: PrepareOptions): Promise<PreparedCheckpoint> {
  const label = basename(file);
  const info = await inspectWeightsFile(file);
  assertBuildable(info, label);
  const form = opts.form ?? graphFormFor(opts.providers ?? ['cpu'], info.dtype);
  const sha256 = await memoizedSha256(file, opts.cacheDir, (bytesDone, bytesTotal) => opts.onProgress?.({ stage: 'hashing', bytesDone, bytesTotal }));
  const key = `${sha256.slice(0, 16)}${formKey(form)}-g${GRAPH_VERSION}`;
  const { dir, reused } = await cachedBuild(opts.cacheDir, key, async (tmp) => {
    const weights = await openWeightsFile(file);
    try {
      await writeModelFolder(weights, { family: info.family, prediction: info.prediction, form }, tmp, {
        ...(opts.tokenizerDir === undefined ? {} : { tokenizerDir: opts.tokenizerDir }),
        ...(opts.signal === undefined ? {} : { signal: opts.signal }),
        onProgress: (p) => opts.onProgress?.({ stage: 'building', ...p }),
      });
    } finally {
      await weights.close();
    }
  });
  return { dir, reused, sha256, info, form };
}
