// A cache of the graphs onnxruntime optimises at session creation. At graphOptimizationLevel
// 'all' the optimisation passes cost a full-size UNet seconds on every start; onnxruntime can write
// the optimised graph (optimizedModelFilePath) and a later start loads that with optimisation off.
//
// An entry is only valid for exactly what produced it, so its key covers: the model file's
// identity (size and modification time of every file in its folder that is not config, and a hash
// of the graph file's first MiB), the execution provider, the optimisation level, the onnxruntime
// version, and the CPU (level 'all' bakes in hardware-specific layouts). Anything else, e.g. a
// replaced model file or an upgraded onnxruntime, gives a new key; the entry it replaces is removed
// when the new one is committed.
//
// Entries are written into a temporary folder and renamed into place only after onnxruntime
// finished writing and the files' sizes were recorded; an entry whose files do not match its
// record (a crash mid-write, a truncated disk) is removed and written again.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';

const GRAPH = 'model.onnx';
const WEIGHTS = 'model.onnx.data';
const RECORD = 'complete.json';
const HEADER_BYTES = 1024 * 1024;
/** Initializers at least this large go to the external weights file (keeps the graph file under protobuf's 2 GB). */
const EXTERNAL_MIN_BYTES = 1024;

export interface CacheKeyInputs {
  provider: string;
  graphOptimizationLevel: string;
  /** onnxruntime's version; the installed one unless a test says otherwise. */
  ortVersion?: string;
}

interface Record {
  files: { [name: string]: number };
}

/** What a session creation does with the cache: load `graph` (optimisation off), or write it. */
export type CachePlan =
  | { kind: 'hit'; graph: string }
  | { kind: 'write'; options: ort.InferenceSession.SessionOptions; commit: () => Promise<void>; abandon: () => Promise<void> };

/** Identity of the model behind `file`: every non-config file of its folder, and the graph's header. */
async function identity(file: string): Promise<unknown> {
  const dir = path.dirname(file);
  const files: [string, number, number][] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (name.endsWith('.json') || name.endsWith('.txt')) continue;
    const info = await stat(path.join(dir, name));
    if (info.isFile()) files.push([name, info.size, info.mtimeMs]);
  }
  const handle = await open(file, 'r');
  const header = Buffer.alloc(HEADER_BYTES);
  let read: number;
  try {
    ({ bytesRead: read } = await handle.read(header, 0, HEADER_BYTES, 0));
  } finally {
    await handle.close();
  }
  return { files, header: createHash('sha256').update(header.subarray(0, read)).digest('hex') };
}

function hash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 24);
}

async function recordMatches(entry: string): Promise<boolean> {
  try {
    const record = JSON.parse(await readFile(path.join(entry, RECORD), 'utf8')) as Record;
    const names = Object.keys(record.files);
    if (!names.includes(GRAPH)) return false;
    for (const name of names) {
      if ((await stat(path.join(entry, name))).size !== record.files[name]) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * How to create the session for `file` with `options` through the cache in `cacheDir`: a hit names
 * the optimised graph to load; otherwise the options make onnxruntime write one, and commit() (after
 * the session was created) puts it in place.
 */
export async function planOptimizedSession(
  cacheDir: string,
  file: string,
  options: ort.InferenceSession.SessionOptions,
  key: CacheKeyInputs,
): Promise<CachePlan> {
  const source = await realpath(file);
  // One family of entries per model file: a new key for the same file replaces the old entry.
  const family = hash({ source });
  const entryName = `${family}-${hash({
    model: await identity(source),
    provider: key.provider,
    level: key.graphOptimizationLevel,
    ort: key.ortVersion ?? ort.env.versions.node ?? ort.env.versions.common,
    cpu: cpus()[0]?.model ?? '',
    arch: process.arch,
  })}`;
  const entry = path.join(cacheDir, entryName);
  if (await recordMatches(entry)) return { kind: 'hit', graph: path.join(entry, GRAPH) };
  await rm(entry, { recursive: true, force: true });

  await mkdir(cacheDir, { recursive: true });
  await removeDeadWrites(cacheDir, entryName);
  const temp = path.join(cacheDir, `.writing-${entryName}-${process.pid}-${Date.now()}`);
  await mkdir(temp);
  const abandon = () => rm(temp, { recursive: true, force: true });
  return {
    kind: 'write',
    options: {
      ...options,
      optimizedModelFilePath: path.join(temp, GRAPH),
      extra: {
        ...(options.extra ?? {}),
        session: {
          ...((options.extra?.['session'] as object | undefined) ?? {}),
          optimized_model_external_initializers_file_name: WEIGHTS,
          optimized_model_external_initializers_min_size_in_bytes: String(EXTERNAL_MIN_BYTES),
        },
      },
    },
    abandon,
    async commit() {
      const files: { [name: string]: number } = {};
      for (const name of await readdir(temp)) files[name] = (await stat(path.join(temp, name))).size;
      if (!(GRAPH in files)) {
        await abandon();
        return;
      }
      await writeFile(path.join(temp, RECORD), JSON.stringify({ files } satisfies Record));
      await rm(entry, { recursive: true, force: true });
      await rename(temp, entry);
      // Older entries of the same model file (it changed, or onnxruntime did) are dead weight.
      for (const name of await readdir(cacheDir)) {
        if (name !== entryName && name.startsWith(`${family}-`)) await rm(path.join(cacheDir, name), { recursive: true, force: true });
      }
    },
  };
}

/** Temporary folders of writes whose process is gone (it died while onnxruntime wrote). */
async function removeDeadWrites(cacheDir: string, entryName: string): Promise<void> {
  const prefix = `.writing-${entryName}-`;
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    // This process's own write may be in progress for another session; a live process's too.
    if (pid === process.pid || isAlive(pid)) continue;
    await rm(path.join(cacheDir, name), { recursive: true, force: true });
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
