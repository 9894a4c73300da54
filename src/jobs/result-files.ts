// Result pictures on disk under the data directory: written durably before the job record that
// points at them, read back as an img2img start, and removed with their job.
import { mkdir, open, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import type { GenerateResult } from '../../engine/types.js';
import { makeGrid, pngWithParameters } from '../render/index.js';
import type { JobImage } from './types.js';

/** Every file a result points at: its pictures and, for several, the grid (paths relative to dataDir). */
export function filesOf(result: { images: JobImage[]; grid?: string | undefined } | undefined): string[] {
  if (!result) return [];
  return [...result.images.map((i) => i.file), ...(result.grid ? [result.grid] : [])];
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** Writes a file and flushes it to disk: the job record that points at it is written next. */
async function writeDurably(file: string, data: Buffer): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class ResultFiles {
  readonly dataDir: string;

  constructor(dataDir: string) {
    this.dataDir = path.resolve(dataDir);
  }

  filePath(relative: string): string {
    const full = path.resolve(this.dataDir, relative);
    const inside = path.relative(this.dataDir, full);
    if (!inside || inside.startsWith('..') || path.isAbsolute(inside)) {
      throw new Error(`refusing a path outside the data directory: ${relative}`);
    }
    return full;
  }

  /** Writes every picture (PNG + parameters) and, for several, the grid; paths relative to dataDir. */
  async save(jobId: string, result: GenerateResult, now: number): Promise<{ images: JobImage[]; grid?: string }> {
    const folder = path.posix.join('images', isoDay(now));
    await mkdir(path.join(this.dataDir, folder), { recursive: true });
    const images: JobImage[] = [];
    const pngs: Buffer[] = [];
    for (const [i, image] of result.images.entries()) {
      const png = await pngWithParameters(image.rgb, image.width, image.height, image.infoText);
      const file = path.posix.join(folder, `${jobId}-${i}.png`);
      await writeDurably(path.join(this.dataDir, file), png);
      pngs.push(png);
      images.push({ file, seed: image.seed, width: image.width, height: image.height, infoText: image.infoText });
    }
    if (images.length === 0) throw new Error('the engine returned no pictures');
    if (pngs.length === 1) return { images };
    const gridFile = path.posix.join(folder, `${jobId}-grid.png`);
    const { png } = await makeGrid(pngs, result.images);
    await writeDurably(path.join(this.dataDir, gridFile), png);
    return { images, grid: gridFile };
  }

  /** A stored picture resized to width × height as packed RGB (an img2img start). */
  async readRgb(relative: string, width: number, height: number, fit: 'fill' | 'cover' = 'fill'): Promise<Uint8Array> {
    const rgb = await sharp(this.filePath(relative))
      .removeAlpha()
      .toColourspace('srgb')
      .resize(width, height, { fit })
      .raw()
      .toBuffer();
    return new Uint8Array(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  }

  async remove(files: string[]): Promise<void> {
    await Promise.all(files.map((f) => rm(this.filePath(f), { force: true })));
  }

  /** Removes one file and, once it is empty, its day's folder. */
  async removeWithFolder(relative: string): Promise<void> {
    const full = this.filePath(relative);
    await rm(full, { force: true });
    await rmdir(path.dirname(full)).catch(() => undefined); // only succeeds once the day's folder is empty
  }
}
