// The textual-inversion embeddings under `models/embeddings/` (subfolders too, as A1111 reads
// them), loaded for one model family at a time. The file name is the trigger word. A file that
// does not fit (another family's width, a `.pt` pickle, not an embedding) is logged once and kept
// as a reason, so a prompt that names it gets that reason instead of a silent miss. The folder is
// looked at on every call (a directory listing and a stat per file): files added, changed or
// removed while the bot runs count from the next job; unchanged files are not read again.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Family } from './checkpoint/detect.js';
import { embeddingName, loadEmbedding, type TextualInversion } from './checkpoint/embeddings.js';
import { sha256File } from './checkpoint/prepare.js';
import type { EngineLog, ModelFamily } from './types.js';

const WEIGHT_FILE = /\.(safetensors|ckpt|pt|pth|bin|pkl)$/i;
const MAX_DEPTH = 3;

export interface EmbeddingSet {
  /** Trigger word → vectors. */
  usable: Map<string, TextualInversion>;
  /** Trigger word → the one-line reason it cannot be used with this family. */
  refused: Map<string, string>;
  /** Trigger word → A1111's short hash (first 12 hex of the file's sha256), for `TI hashes`. */
  hashes: Map<string, string>;
}

type Loaded = { embedding: TextualInversion; hash: string } | { reason: string };

/** The embedding family a model's text encoder takes. */
export function embeddingFamily(family: ModelFamily | Family): Family {
  return family === 'sd-turbo' ? 'sd2' : family;
}

export class EmbeddingLibrary {
  private readonly cache = new Map<string, Promise<Loaded>>();
  /** Files already reported as shadowed by a same-named one (reported once per file version). */
  private readonly shadowed = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly log?: EngineLog,
  ) {}

  /** The embeddings for a model of `family` whose text encoder is `width` wide (SD 1.x/2.x). */
  async forModel(family: Family, width?: number): Promise<EmbeddingSet> {
    const set: EmbeddingSet = { usable: new Map(), refused: new Map(), hashes: new Map() };
    const live = new Set<string>();
    /** Lower-cased trigger words already in `usable` or `refused` (the first file of a name wins). */
    const taken = new Set<string>();
    for (const file of await this.files()) {
      const name = embeddingName(file.path);
      const key = `${family}:${width ?? ''}\0${file.path}\0${file.size}\0${file.mtimeMs}`;
      live.add(key);
      let pending = this.cache.get(key);
      if (!pending) {
        pending = this.load(file.path, family, width);
        this.cache.set(key, pending);
      }
      const loaded = await pending;
      const lower = name.toLowerCase();
      if (taken.has(lower)) {
        if (!this.shadowed.has(key)) this.log?.warn({ file: file.path }, `embedding "${name}" is ignored: another embedding file has the same name`);
        this.shadowed.add(key);
        continue;
      }
      taken.add(lower);
      if ('reason' in loaded) set.refused.set(name, loaded.reason);
      else {
        set.usable.set(name, loaded.embedding);
        set.hashes.set(name, loaded.hash);
      }
    }
    // Forget files that changed or went away, so the cache does not grow with every edit.
    for (const seen of [this.cache, this.shadowed]) {
      for (const key of seen.keys()) if (key.startsWith(`${family}:${width ?? ''}\0`) && !live.has(key)) seen.delete(key);
    }
    return set;
  }

  private async load(path: string, family: Family, width: number | undefined): Promise<Loaded> {
    try {
      const embedding = await loadEmbedding(path, family, width === undefined ? {} : { width });
      return { embedding, hash: (await sha256File(path)).slice(0, 12) };
    } catch (err) {
      const reason = (err as Error).message;
      this.log?.warn({ file: path, family }, reason);
      return { reason };
    }
  }

  private async files(): Promise<{ path: string; size: number; mtimeMs: number }[]> {
    const out: { path: string; size: number; mtimeMs: number }[] = [];
    const visit = async (dir: string, depth: number): Promise<void> => {
      let names: string[];
      try {
        names = (await readdir(dir)).filter((n) => !n.startsWith('.')).sort();
      } catch {
        return; // no embeddings folder: no embeddings
      }
      for (const name of names) {
        const path = join(dir, name);
        const s = await stat(path).catch(() => undefined);
        if (!s) continue;
        if (s.isDirectory()) {
          if (depth < MAX_DEPTH) await visit(path, depth + 1);
        } else if (s.isFile() && WEIGHT_FILE.test(name)) out.push({ path, size: s.size, mtimeMs: s.mtimeMs });
      }
    };
    await visit(this.dir, 0);
    return out;
  }
}
