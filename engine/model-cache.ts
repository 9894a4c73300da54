// The loaded models of one engine: least recently used first out, bounded by a memory budget.
// Loading a full-size model costs seconds to minutes, so alternating between models that fit
// together must not reload them; models that do not fit push the least recently used out
// (its sessions released) before the new one loads, so two never sit in memory at once.
//
// Entries are keyed by the folder a model was loaded from, whatever the request called it (a LoRA
// variant folder is a model of its own; two names for one folder share the entry). What the
// requests called it are load keys (./job-loras.ts loadKey): what the scheduler knows jobs by.
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * Resident bytes per byte of weight files, after the load. Measured on the full-size random SD 1.5
 * (`bench:engine --fullsize`, RSS after a first load): 4231 MB for 4069 MB of weights, 1.04×; the
 * rest of the factor is room for what onnxruntime keeps between runs.
 */
export const RESIDENT_FACTOR = 1.15;

export interface CachedModel {
  release(): Promise<void>;
}

interface Entry<M extends CachedModel> {
  model: M;
  bytes: number;
  /** Load keys of the requests that resolved to this folder (what the scheduler knows jobs by). */
  names: Set<string>;
}

export class ModelCache<M extends CachedModel> {
  // A Map keeps insertion order: re-inserting on use makes the first key the least recently used.
  private readonly entries = new Map<string, Entry<M>>();

  /** `budgetBytes`: the most the resident models may take together (Infinity: no bound). */
  constructor(private readonly budgetBytes: number) {}

  /** The model loaded from `key`, marked as just used; `name` (a load key) joins those it answers to. */
  get(key: string, name?: string): M | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (name !== undefined) entry.names.add(name);
    return entry.model;
  }

  /**
   * Releases least recently used models until `bytes` more fit the budget (or none is left). Call
   * before loading, so the old sessions are gone before the new ones take memory.
   */
  async makeRoom(bytes: number): Promise<string[]> {
    const evicted: string[] = [];
    for (const [key, entry] of this.entries) {
      if (this.residentBytes() + bytes <= this.budgetBytes) break;
      this.entries.delete(key);
      evicted.push(key);
      await entry.model.release();
    }
    return evicted;
  }

  add(key: string, model: M, bytes: number, name?: string): void {
    this.entries.set(key, { model, bytes, names: new Set(name === undefined ? [] : [name]) });
  }

  residentBytes(): number {
    let total = 0;
    for (const entry of this.entries.values()) total += entry.bytes;
    return total;
  }

  /** Load keys of the resident models, most recently used last. */
  names(): string[] {
    return [...this.entries.values()].flatMap((entry) => [...entry.names]);
  }

  /** Empties the cache, releasing every model. */
  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const entry of all) await entry.model.release();
  }
}

/** Bytes of the files in a model folder's session parts (graphs and external weights). */
export async function weightBytes(dir: string, parts: readonly string[]): Promise<number> {
  let total = 0;
  for (const part of parts) {
    let names: string[];
    try {
      names = await readdir(path.join(dir, part));
    } catch {
      continue;
    }
    for (const name of names) {
      if (name.endsWith('.json') || name.endsWith('.txt')) continue;
      const info = await stat(path.join(dir, part, name)).catch(() => undefined);
      if (info?.isFile()) total += info.size;
    }
  }
  return total;
}

/** The footprint a model folder is expected to take once loaded. */
export async function estimateResidentBytes(dir: string, parts: readonly string[]): Promise<number> {
  return Math.round((await weightBytes(dir, parts)) * RESIDENT_FACTOR);
}
