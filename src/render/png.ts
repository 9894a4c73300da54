// Single pictures: packed RGB from the engine → PNG, with the AUTOMATIC1111 `parameters` chunk.
import sharp, { type Sharp } from 'sharp';
import { insertTextChunk } from '../../engine/png.js';

/**
 * zlib level 4 without row filters: bench/png.ts measured 6–14 % less CPU per 512×512 picture
 * than level 6 (the setting before issue 12) with files at most 2.3 % larger on every kind of
 * content it tries; adaptive filtering made files smaller but cost 30–170 % more CPU.
 */
export const PNG_COMPRESSION = 4;

function rawInput(rgb: Uint8Array, width: number, height: number): Sharp {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`invalid image size ${width}x${height}`);
  }
  if (rgb.length !== width * height * 3) {
    throw new Error(`RGB buffer has ${rgb.length} bytes; ${width}x${height} needs ${width * height * 3}`);
  }
  // sharp wants a Buffer; wrap the same memory instead of copying it.
  const buf = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return sharp(buf, { raw: { width, height, channels: 3 } });
}

/** A plain PNG (for step previews and anything without parameters). */
export async function rgbToPng(
  rgb: Uint8Array,
  width: number,
  height: number,
  opts: { compressionLevel?: number; resize?: { width: number; height: number } } = {},
): Promise<Buffer> {
  const input = rawInput(rgb, width, height);
  return (opts.resize ? input.resize(opts.resize.width, opts.resize.height) : input)
    .png({ compressionLevel: opts.compressionLevel ?? PNG_COMPRESSION })
    .toBuffer();
}

/** A PNG carrying `infoText` in a `parameters` text chunk, as AUTOMATIC1111 saves it. */
export async function pngWithParameters(
  rgb: Uint8Array,
  width: number,
  height: number,
  infoText: string,
): Promise<Buffer> {
  const png = await rgbToPng(rgb, width, height);
  return insertTextChunk(png, 'parameters', infoText);
}
