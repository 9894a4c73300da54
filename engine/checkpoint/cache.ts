// The cache of built models: one folder per key under the cache directory. A folder is only ever
// seen complete: it is built under a temporary name, a manifest listing every file and its size
// is written last, and the folder is renamed into place (atomic on one file system). A crash
// leaves a `*.partial-*` folder, which the next build of that key deletes; an entry whose files
// no longer match its manifest (a truncated copy, a deleted part) is rebuilt, not used.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';

const MANIFEST = 'complete.json';

interface Manifest {
  key: string;
  files: Record<string, number>;
}

async function listFiles(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full, root)));
    else if (entry.isFile()) out.push(relative(root, full));
  }
  return out;
}

/** True when `dir` holds a manifest for `key` and every file it lists, at its recorded size. */
export async function isCompleteEntry(dir: string, key: string): Promise<boolean> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, MANIFEST), 'utf8')) as Manifest;
  } catch {
    return false;
  }
  if (manifest.key !== key || typeof manifest.files !== 'object') return false;
  for (const [file, size] of Object.entries(manifest.files)) {
    const s = await stat(join(dir, file)).catch(() => undefined);
    if (s === undefined || s.size !== size) return false;
  }
  return true;
}

export interface CacheResult {
  dir: string;
  /** True when a complete entry was already there and nothing was built. */
  reused: boolean;
}

const inFlight = new Map<string, Promise<CacheResult>>();

/**
 * The folder for `key` under `cacheDir`, built by `build(tmpDir)` when missing or damaged.
 * Concurrent calls for one key in this process share one build.
 */
export function cachedBuild(cacheDir: string, key: string, build: (tmpDir: string) => Promise<void>): Promise<CacheResult> {
  if (!/^[\w.-]+$/.test(key)) throw new Error(`cache key "${key}" must be a plain file name`);
  const dir = join(cacheDir, key);
  const running = inFlight.get(dir);
  if (running !== undefined) return running;
  const job = (async (): Promise<CacheResult> => {
    if (await isCompleteEntry(dir, key)) return { dir, reused: true };
    await mkdir(cacheDir, { recursive: true });
    // Leftovers of an interrupted build, or an entry that no longer matches its manifest.
    for (const name of await readdir(cacheDir)) {
      if (name === key || name.startsWith(`${key}.partial-`)) await rm(join(cacheDir, name), { recursive: true, force: true });
    }
    const tmp = join(cacheDir, `${key}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
    await mkdir(tmp);
    try {
      await build(tmp);
      const files: Record<string, number> = {};
      for (const file of await listFiles(tmp)) files[file] = (await stat(join(tmp, file))).size;
      await writeFile(join(tmp, MANIFEST), JSON.stringify({ key, files } satisfies Manifest));
      await rename(tmp, dir);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return { dir, reused: false };
  })();
  inFlight.set(dir, job);
  return job.finally(() => inFlight.delete(dir));
}
