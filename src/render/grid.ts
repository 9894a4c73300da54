// Several pictures of one job side by side in one PNG (Midjourney-style 2×2 for four).
import sharp from 'sharp';
import { insertTextChunk, readTextChunks } from '../../engine/png.js';
import { PNG_COMPRESSION } from './png.js';

/** Background of empty cells (a 3-picture grid leaves one): dark, so it reads as "nothing". */
const EMPTY_CELL = { r: 24, g: 24, b: 24, alpha: 1 } as const;

export interface GridLayout {
  columns: number;
  rows: number;
}

export interface RawPicture {
  rgb: Uint8Array;
  width: number;
  height: number;
}

async function pngSizes(pngs: Buffer[]): Promise<{ width: number; height: number }[]> {
  const metas = await Promise.all(pngs.map((p) => sharp(p).metadata()));
  return metas.map((m, i) => {
    if (!m.width || !m.height) throw new Error(`grid picture ${i + 1} has no size (not an image?)`);
    return { width: m.width, height: m.height };
  });
}

/** 1 → 1×1, 2 → 2×1, 3 and 4 → 2×2, then ceil(√n) columns (5–6 → 3×2, 7–9 → 3×3). */
export function gridLayout(count: number): GridLayout {
  if (!Number.isInteger(count) || count < 1) throw new Error(`a grid needs at least one picture, got ${count}`);
  const columns = Math.ceil(Math.sqrt(count));
  return { columns, rows: Math.ceil(count / columns) };
}

/**
 * Lays the pictures out left to right, top to bottom, each in a cell as large as the largest
 * picture (pictures of one job share a size, so normally no padding shows).
 *
 * Text: a grid holds several seeds, but AUTOMATIC1111 readers know one `parameters` chunk. Like
 * AUTOMATIC1111's own grids, the grid carries picture 1's parameters unchanged (so pasting it
 * reproduces picture 1), plus a `Comment` chunk saying so and how the other pictures differ.
 * A single picture is returned unchanged.
 */
export async function makeGrid(
  pngs: Buffer[],
  /** The same pictures as packed RGB, when the caller has them: composed directly instead of decoding the PNGs again. */
  raw?: readonly RawPicture[],
): Promise<{ png: Buffer; width: number; height: number }> {
  const { columns, rows } = gridLayout(pngs.length);
  const sizes = raw && raw.length === pngs.length ? raw.map(({ width, height }) => ({ width, height })) : await pngSizes(pngs);
  const first = sizes[0];
  const firstPng = pngs[0];
  if (!first || !firstPng) throw new Error('a grid needs at least one picture');
  if (pngs.length === 1) return { png: firstPng, ...first };

  const cellW = Math.max(...sizes.map((s) => s.width));
  const cellH = Math.max(...sizes.map((s) => s.height));
  const width = cellW * columns;
  const height = cellH * rows;
  const grid = await sharp({ create: { width, height, channels: 3, background: EMPTY_CELL } })
    .composite(
      pngs.map((png, i) => {
        const place = { left: (i % columns) * cellW, top: Math.floor(i / columns) * cellH };
        const picture = raw && raw.length === pngs.length ? raw[i] : undefined;
        if (!picture) return { input: png, ...place };
        const { rgb, width: w, height: h } = picture;
        return { input: Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), raw: { width: w, height: h, channels: 3 as const }, ...place };
      }),
    )
    .png({ compressionLevel: PNG_COMPRESSION })
    .toBuffer();

  const info = readTextChunks(firstPng).find((c) => c.keyword === 'parameters');
  if (!info) return { png: grid, width, height };
  const comment =
    `Grid of ${pngs.length} pictures (${columns}x${rows}). The parameters chunk describes picture 1; ` +
    'picture i uses Seed + i - 1 (for variations: the same Seed and Variation seed + i - 1).';
  const withParams = insertTextChunk(grid, 'parameters', info.text);
  return { png: insertTextChunk(withParams, 'Comment', comment), width, height };
}
