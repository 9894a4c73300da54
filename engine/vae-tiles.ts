// Tiled VAE decoding for low memory mode: the decoder's activations grow with the picture (at
// 512² its largest are 128 channels × 512² floats, and its middle attention is quadratic in the
// latent area), so a large picture is decoded as overlapping latent tiles whose pictures are
// blended across the overlaps with linear ramps. The seams stay invisible because every output
// pixel in an overlap is a weighted mean of two decodes of nearly the same neighbourhood.
// A real VAE's decoder is not fully local (its group norms and middle attention see the whole
// tile), so tiles differ slightly from one whole decode; that is the price of the memory.

/** Latent tile side (64 → 512-pixel tiles, the size SD 1.x was trained at) and overlap. */
export const VAE_TILE = 64;
export const VAE_TILE_OVERLAP = 16;
const SCALE = 8;
const LATENT_CHANNELS = 4;

/** Decodes latents [B,4,h,w] → images [B,3,8h,8w]. */
export type VaeDecode = (latent: Float32Array, batch: number, latentH: number, latentW: number) => Promise<Float32Array>;

/** Tile starts along one axis: every `tile - overlap`, the last one flush with the end. */
export function tileStarts(length: number, tile: number, overlap: number): number[] {
  if (length <= tile) return [0];
  const stride = tile - overlap;
  const starts: number[] = [];
  for (let s = 0; s + tile < length; s += stride) starts.push(s);
  starts.push(length - tile);
  return starts;
}

/**
 * Weight of pixel i (0-based, in pixels) of a tile of `size` pixels along one axis: rising over
 * the overlap with the tile before it, falling over the overlap with the tile after it, 1 between;
 * tiles at the picture's border get no ramp on that side.
 */
function ramp(i: number, size: number, rampBefore: number, rampAfter: number): number {
  let w = 1;
  if (rampBefore > 0 && i < rampBefore) w = Math.min(w, (i + 0.5) / rampBefore);
  if (rampAfter > 0 && i >= size - rampAfter) w = Math.min(w, (size - i - 0.5) / rampAfter);
  return w;
}

/** Pixels tile i overlaps with the tile before and the one after it (the last tile may overlap more). */
function overlapsOf(starts: readonly number[], i: number, size: number): [before: number, after: number] {
  const before = i > 0 ? starts[i - 1]! + size - starts[i]! : 0;
  const after = i < starts.length - 1 ? starts[i]! + size - starts[i + 1]! : 0;
  return [before * SCALE, after * SCALE];
}

/** Decodes [B,4,lh,lw] tile by tile (one decoder call per tile, all pictures of the batch at once). */
export async function decodeTiled(
  decode: VaeDecode,
  latent: Float32Array,
  batch: number,
  lh: number,
  lw: number,
  tile = VAE_TILE,
  overlap = VAE_TILE_OVERLAP,
): Promise<Float32Array> {
  const H = lh * SCALE;
  const W = lw * SCALE;
  const out = new Float32Array(batch * 3 * H * W);
  const weight = new Float32Array(H * W);
  const ys = tileStarts(lh, tile, overlap);
  const xs = tileStarts(lw, tile, overlap);
  const th = Math.min(tile, lh);
  const tw = Math.min(tile, lw);
  const tileLatent = new Float32Array(batch * LATENT_CHANNELS * th * tw);
  for (const [yi, y0] of ys.entries()) {
    for (const [xi, x0] of xs.entries()) {
      for (let b = 0; b < batch; b++) {
        for (let c = 0; c < LATENT_CHANNELS; c++) {
          const src = (b * LATENT_CHANNELS + c) * lh * lw;
          const dst = (b * LATENT_CHANNELS + c) * th * tw;
          for (let y = 0; y < th; y++) {
            const from = src + (y0 + y) * lw + x0;
            tileLatent.set(latent.subarray(from, from + tw), dst + y * tw);
          }
        }
      }
      const pixels = await decode(tileLatent, batch, th, tw);
      const [rampTop, rampBottom] = overlapsOf(ys, yi, th);
      const [rampLeft, rampRight] = overlapsOf(xs, xi, tw);
      const PH = th * SCALE;
      const PW = tw * SCALE;
      const rowWeights = new Float32Array(PW);
      for (let x = 0; x < PW; x++) rowWeights[x] = ramp(x, PW, rampLeft, rampRight);
      for (let y = 0; y < PH; y++) {
        const wy = ramp(y, PH, rampTop, rampBottom);
        const outRow = (y0 * SCALE + y) * W + x0 * SCALE;
        for (let x = 0; x < PW; x++) weight[outRow + x]! += wy * rowWeights[x]!;
        for (let bc = 0; bc < batch * 3; bc++) {
          const tileRow = (bc * PH + y) * PW;
          const planeRow = bc * H * W + outRow;
          for (let x = 0; x < PW; x++) out[planeRow + x]! += wy * rowWeights[x]! * pixels[tileRow + x]!;
        }
      }
    }
  }
  const plane = H * W;
  for (let bc = 0; bc < batch * 3; bc++) {
    const base = bc * plane;
    for (let p = 0; p < plane; p++) out[base + p]! /= weight[p]!;
  }
  return out;
}
