// Picture sizes. Every side is a multiple of 64: Stable Diffusion's VAE divides by 8 and the
// UNet halves the latent three more times, so ONNX exports with fixed-stride skips want
// multiples of 64 (A1111 allows 8, but odd latents break several exports).

export const SIZE_STEP = 64;
/** The most extreme ratio accepted either way (4:1 or 1:4); beyond it pictures degenerate. */
export const MAX_RATIO = 4;

export const ASPECT_EXAMPLES = '1:1, 3:2, 2:3, 4:3, 16:9, 9:16';

export type AspectParse = { ok: true; w: number; h: number; ratio: number } | { ok: false; error: string };

export type SizeResult =
  | {
      ok: true;
      width: number;
      height: number;
      /** True when limits.maxPixels or limits.maxSide made the picture smaller than asked. */
      limited: boolean;
    }
  | { ok: false; error: string };

/** "16:9" (or 16/9, 16x9, 16×9) → 16/9. Whole or decimal numbers ("2.39:1"); fullwidth digits and colons are accepted. */
export function parseAspect(text: string): AspectParse {
  const shown = text.length > 20 ? `${text.slice(0, 20)}…` : text;
  const bad = (why: string): AspectParse => ({
    ok: false,
    error: `aspect "${shown}" ${why}; use W:H such as ${ASPECT_EXAMPLES} (at most ${MAX_RATIO}:1 either way)`,
  });
  // 3:2, and as people also write it: 3/2, 3x2, 3×2 (∶ and fullwidth forms fold under NFKC).
  const m = /^\s*(\d{1,5}(?:\.\d{1,3})?)\s*[:/x×∶]\s*(\d{1,5}(?:\.\d{1,3})?)\s*$/i.exec(text.normalize('NFKC'));
  if (!m) return bad('is not a ratio');
  const w = Number(m[1]);
  const h = Number(m[2]);
  if (!(w > 0) || !(h > 0)) return bad('has a zero side');
  const ratio = w / h;
  if (ratio > MAX_RATIO || ratio < 1 / MAX_RATIO) return bad('is too extreme');
  return { ok: true, w, h, ratio };
}

/**
 * SDXL's training buckets at 1024² (width, height): the sizes SDXL models draw best, so an aspect
 * ratio near one of them gets exactly that bucket rather than the nearest grid size.
 */
export const SDXL_BUCKETS: readonly (readonly [number, number])[] = [
  [1024, 1024],
  [1152, 896],
  [896, 1152],
  [1216, 832],
  [832, 1216],
  [1344, 768],
  [768, 1344],
  [1536, 640],
  [640, 1536],
];

/** A bucket is used when its ratio is within 10 % of the one asked for; beyond that (3:1, 4:1) the grid fit is closer. */
const BUCKET_TOLERANCE = Math.log(1.1);

/**
 * The size for an aspect ratio at about the model's native pixel area: sides in multiples of
 * 64, as close as possible to both the ratio and the area, within maxPixels and maxSide. With
 * `buckets` (SDXL's, for a 1024² model), the nearest bucket in ratio when it is close and fits.
 */
export function aspectToSize(
  aspect: string,
  native: { width: number; height: number; buckets?: readonly (readonly [number, number])[] },
  maxPixels: number,
  maxSide: number,
): SizeResult {
  const parsed = parseAspect(aspect);
  if (!parsed.ok) return parsed;
  const bucket = nearestBucket(native.buckets ?? [], parsed.ratio);
  if (bucket && bucket[0] * bucket[1] <= maxPixels && Math.max(bucket[0], bucket[1]) <= maxSide) {
    return { ok: true, width: bucket[0], height: bucket[1], limited: false };
  }
  const area = Math.max(SIZE_STEP * SIZE_STEP, native.width * native.height);
  return fitToGrid(Math.sqrt(area * parsed.ratio), Math.sqrt(area / parsed.ratio), maxPixels, maxSide);
}

function nearestBucket(buckets: readonly (readonly [number, number])[], ratio: number): readonly [number, number] | undefined {
  let best: { bucket: readonly [number, number]; off: number } | undefined;
  for (const bucket of buckets) {
    const off = Math.abs(Math.log(bucket[0] / bucket[1] / ratio));
    if (off <= BUCKET_TOLERANCE && (!best || off < best.off)) best = { bucket, off };
  }
  return best?.bucket;
}

/** An exact size asked for (--size, a pasted Size:), snapped to multiples of 64 and kept within the limits. */
export function exactSize(width: number, height: number, maxPixels: number, maxSide: number): SizeResult {
  if (!(width > 0) || !(height > 0) || !Number.isFinite(width) || !Number.isFinite(height)) {
    return { ok: false, error: `size ${width}x${height} is not a picture size; use WxH such as 512x768` };
  }
  const ratio = width / height;
  if (ratio > MAX_RATIO * 1.01 || ratio < 1 / (MAX_RATIO * 1.01)) {
    return { ok: false, error: `size ${width}x${height} is too extreme; at most ${MAX_RATIO}:1 either way` };
  }
  return fitToGrid(width, height, maxPixels, maxSide);
}

/** Snap a wished-for (real-valued) size onto the 64-pixel grid, inside the limits. */
function fitToGrid(wantW: number, wantH: number, maxPixels: number, maxSide: number): SizeResult {
  const scale = Math.min(1, Math.sqrt(maxPixels / (wantW * wantH)), maxSide / Math.max(wantW, wantH));
  // A hair of tolerance so that a size exactly at a limit does not count as limited.
  const limited = scale < 0.999;
  const tw = wantW * scale;
  const th = wantH * scale;
  const fits = (w: number, h: number): boolean => w * h <= maxPixels && w <= maxSide && h <= maxSide;

  let best: { w: number; h: number; score: number } | undefined;
  for (const w of gridNeighbours(tw)) {
    for (const h of gridNeighbours(th)) {
      if (!fits(w, h)) continue;
      // Equal weight to shape and area, in log space so that 10% too big and 10% too small cost alike.
      const score = Math.abs(Math.log(w / h / (tw / th))) + Math.abs(Math.log((w * h) / (tw * th)));
      if (!best || score < best.score - 1e-12) best = { w, h, score };
    }
  }
  if (!best) {
    // Only reachable with tiny limits: shrink the longer side until it fits.
    let w = Math.max(SIZE_STEP, Math.floor(tw / SIZE_STEP) * SIZE_STEP);
    let h = Math.max(SIZE_STEP, Math.floor(th / SIZE_STEP) * SIZE_STEP);
    while (!fits(w, h) && (w > SIZE_STEP || h > SIZE_STEP)) {
      if (w >= h) w -= SIZE_STEP;
      else h -= SIZE_STEP;
    }
    if (!fits(w, h)) return { ok: false, error: 'this club allows no picture large enough (check limits.maxPixels)' };
    return { ok: true, width: w, height: h, limited: true };
  }
  return { ok: true, width: best.w, height: best.h, limited };
}

function gridNeighbours(x: number): number[] {
  const lo = Math.max(SIZE_STEP, Math.floor(x / SIZE_STEP) * SIZE_STEP);
  const hi = Math.max(SIZE_STEP, Math.ceil(x / SIZE_STEP) * SIZE_STEP);
  return lo === hi ? [lo] : [lo, hi];
}
