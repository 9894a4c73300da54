// Fit a rendered PNG into a platform's upload limits. The PNG goes out unchanged when it fits;
// otherwise a lossy copy is made smaller (quality first, then size) until it does, so an
// upload never fails for size.
import sharp from 'sharp';

export type DeliveryFormat = 'png' | 'webp' | 'jpeg';

export interface DeliveryOptions {
  /** Largest width + height (Telegram photos: 10000). */
  maxSideSum?: number;
  /** Largest long-side / short-side ratio (Telegram photos: 20); wider pictures get dark bars. */
  maxAspect?: number;
  /** Formats the destination accepts, default all three. PNG is only ever the first choice. */
  formats?: DeliveryFormat[];
  /** Lossy format to fall back to (default WebP when allowed, else JPEG). */
  prefer?: 'webp' | 'jpeg';
}

export interface Delivery {
  data: Buffer;
  format: DeliveryFormat;
  /** File-name extension without the dot. */
  ext: 'png' | 'webp' | 'jpg';
  width: number;
  height: number;
}

const START_QUALITY = 90;
/** Below this, artefacts show on faces and gradients; shrinking looks better than that. */
const MIN_QUALITY = 70;
const QUALITY_STEP = 10;
const MIN_SIDE = 16;
const MAX_ATTEMPTS = 24;
const BARS = { r: 24, g: 24, b: 24, alpha: 1 } as const;

interface Geometry {
  /** Size of the picture itself after scaling. */
  width: number;
  height: number;
  /** Bars added to keep the aspect ratio within bounds (split between both sides). */
  padX: number;
  padY: number;
}

function geometryAt(w: number, h: number, k: number, maxAspect: number | undefined): Geometry {
  const width = Math.max(1, Math.floor(w * k));
  const height = Math.max(1, Math.floor(h * k));
  let padX = 0;
  let padY = 0;
  if (maxAspect !== undefined) {
    if (width / height > maxAspect) padY = Math.ceil(width / maxAspect) - height;
    else if (height / width > maxAspect) padX = Math.ceil(height / maxAspect) - width;
  }
  return { width, height, padX, padY };
}

function outerSum(g: Geometry): number {
  return g.width + g.padX + g.height + g.padY;
}

/** The largest scale ≤ 1 at which the (padded) picture respects maxSideSum. */
function fittingScale(w: number, h: number, opts: DeliveryOptions): number {
  const { maxSideSum, maxAspect } = opts;
  if (maxSideSum === undefined) return 1;
  let k = Math.min(1, maxSideSum / outerSum(geometryAt(w, h, 1, maxAspect)));
  // Rounding and bars can overshoot by a pixel or two; nudge down until it holds.
  while (k > 0 && outerSum(geometryAt(w, h, k, maxAspect)) > maxSideSum) k *= 0.999;
  return k;
}

const EXT: Record<DeliveryFormat, Delivery['ext']> = { png: 'png', webp: 'webp', jpeg: 'jpg' };

async function encode(input: Buffer, g: Geometry, sourceW: number, sourceH: number, format: DeliveryFormat, quality: number) {
  let img = sharp(input);
  if (g.width !== sourceW || g.height !== sourceH) img = img.resize(g.width, g.height, { fit: 'fill', kernel: 'lanczos3' });
  if (g.padX || g.padY) {
    const left = Math.floor(g.padX / 2);
    const top = Math.floor(g.padY / 2);
    img = img.extend({ left, right: g.padX - left, top, bottom: g.padY - top, background: BARS });
  }
  if (format === 'png') img = img.png({ compressionLevel: 9 });
  else if (format === 'webp') img = img.webp({ quality });
  else img = img.flatten({ background: BARS }).jpeg({ quality, chromaSubsampling: quality >= 90 ? '4:4:4' : '4:2:0' });
  return img.toBuffer();
}

/**
 * Returns `png` itself when it fits every limit, else the smallest change that does: a
 * re-encoded PNG when only the geometry had to change, then WebP/JPEG at falling quality,
 * then at falling size. Throws only when even a tiny picture cannot meet `byteLimit`.
 */
export async function encodeForDelivery(png: Buffer, byteLimit: number, opts: DeliveryOptions = {}): Promise<Delivery> {
  if (!(byteLimit > 0)) throw new Error(`byte limit must be positive, got ${byteLimit}`);
  const formats = opts.formats?.length ? opts.formats : (['png', 'webp', 'jpeg'] as DeliveryFormat[]);
  const meta = await sharp(png).metadata();
  if (!meta.width || !meta.height) throw new Error('cannot deliver: the input is not a readable image');
  const { width: w, height: h } = meta;

  const k0 = fittingScale(w, h, opts);
  const g0 = geometryAt(w, h, k0, opts.maxAspect);
  const geometryKept = g0.width === w && g0.height === h && !g0.padX && !g0.padY;
  const pngAllowed = formats.includes('png');

  if (pngAllowed && geometryKept && meta.format === 'png' && png.length <= byteLimit) {
    return { data: png, format: 'png', ext: 'png', width: w, height: h };
  }

  const lossy: DeliveryFormat | undefined =
    opts.prefer && formats.includes(opts.prefer) ? opts.prefer : formats.find((f) => f !== 'png');
  const format: DeliveryFormat = lossy ?? 'png';
  // When only the geometry changed, a PNG at the new size may already fit; lossless is worth one try.
  if (pngAllowed && lossy && !geometryKept) {
    const data = await encode(png, g0, w, h, 'png', 100);
    if (data.length <= byteLimit) return result(data, 'png', g0);
  }

  let scale = 1;
  let quality = START_QUALITY;
  /** Smallest scale that was still too big, once shrinking started. */
  let tooBig: number | undefined;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const g = geometryAt(w, h, k0 * scale, opts.maxAspect);
    if (Math.min(g.width, g.height) < MIN_SIDE && attempt > 0) break;
    const data = await encode(png, g, w, h, format, quality);
    if (data.length <= byteLimit) {
      return tooBig === undefined ? result(data, format, g) : refine(png, w, h, k0, opts, format, quality, byteLimit, scale, tooBig, result(data, format, g));
    }
    const ratio = byteLimit / data.length;
    // Close to the limit, a lower quality costs less detail than a smaller picture.
    if (format !== 'png' && quality > MIN_QUALITY && ratio > 0.5) quality = Math.max(MIN_QUALITY, quality - QUALITY_STEP);
    else {
      tooBig = scale;
      // Bytes grow roughly with the pixel count, so the side shrinks with the square root.
      scale *= Math.min(0.95, Math.sqrt(ratio) * 0.95);
    }
  }
  throw new Error(`cannot fit the picture into ${byteLimit} bytes`);
}

const REFINE_STEPS = 3;

/**
 * Downscaling smooths detail, so bytes often fall faster than pixels and the first fit is
 * smaller than it needs to be. A few bisection steps between the fitting and the too-big
 * scale give back resolution.
 */
async function refine(
  png: Buffer,
  w: number,
  h: number,
  k0: number,
  opts: DeliveryOptions,
  format: DeliveryFormat,
  quality: number,
  byteLimit: number,
  fits: number,
  tooBig: number,
  best: Delivery,
): Promise<Delivery> {
  let lo = fits;
  let hi = tooBig;
  for (let i = 0; i < REFINE_STEPS && best.data.length < byteLimit * 0.9 && hi / lo > 1.03; i++) {
    const mid = Math.sqrt(lo * hi);
    const g = geometryAt(w, h, k0 * mid, opts.maxAspect);
    const data = await encode(png, g, w, h, format, quality);
    if (data.length <= byteLimit) {
      lo = mid;
      best = result(data, format, g);
    } else hi = mid;
  }
  return best;
}

function result(data: Buffer, format: DeliveryFormat, g: Geometry): Delivery {
  return { data, format, ext: EXT[format], width: g.width + g.padX, height: g.height + g.padY };
}
