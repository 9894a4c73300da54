// What the demo-model tests look at in a picture: its dominant hue, so an assertion depends on
// what the model learned ("red apple" is red) and fails on a wrong VAE scaling, channel order or
// text conditioning.
import sharp from 'sharp';

export type Hue = 'red' | 'orange' | 'yellow' | 'green' | 'cyan' | 'blue' | 'purple';

/** Upper hue bound (degrees, exclusive) of each bucket, in order; red wraps around 345°. */
const BUCKETS: [Hue, number][] = [
  ['red', 15],
  ['orange', 45],
  ['yellow', 70],
  ['green', 170],
  ['cyan', 200],
  ['blue', 260],
  ['purple', 345],
  ['red', 360],
];

/**
 * The hue bucket holding most of the picture's coloured pixels (saturated and not dark): white
 * backgrounds, greys and outlines do not vote. undefined when nothing is coloured.
 */
export function dominantHue(rgb: Uint8Array): Hue | undefined {
  const votes = new Map<Hue, number>();
  for (let p = 0; p + 2 < rgb.length; p += 3) {
    const r = rgb[p]!;
    const g = rgb[p + 1]!;
    const b = rgb[p + 2]!;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    if (max < 60 || (max - min) / max < 0.35) continue;
    const d = max - min;
    let h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
    h *= 60;
    if (h < 0) h += 360;
    const hue = BUCKETS.find(([, upper]) => h < upper)![0];
    votes.set(hue, (votes.get(hue) ?? 0) + 1);
  }
  let best: Hue | undefined;
  let most = 0;
  for (const [hue, n] of votes) {
    if (n > most) {
      best = hue;
      most = n;
    }
  }
  return best;
}

/** Packed RGB of a PNG or JPEG (alpha dropped). */
export async function rgbOf(file: Buffer): Promise<Uint8Array> {
  const { data } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
