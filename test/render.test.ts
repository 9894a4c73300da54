import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { readTextChunks } from '../engine/png.js';
import { encodeForDelivery, gridLayout, makeGrid, pngWithParameters, rgbToPng } from '../src/render/index.js';

function solid(width: number, height: number, rgb: [number, number, number]): Uint8Array {
  const out = new Uint8Array(width * height * 3);
  for (let i = 0; i < out.length; i += 3) out.set(rgb, i);
  return out;
}

async function pixel(png: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const at = (y * info.width + x) * 3;
  return [data[at]!, data[at + 1]!, data[at + 2]!];
}

const INFO = 'a fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 41, Size: 8x6, Model: tiny';

describe('pngWithParameters', () => {
  it('writes the picture and an AUTOMATIC1111 parameters chunk sharp can read', async () => {
    const png = await pngWithParameters(solid(8, 6, [10, 200, 30]), 8, 6, INFO);
    const meta = await sharp(png).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['png', 8, 6]);
    expect(meta.comments).toEqual([{ keyword: 'parameters', text: INFO }]);
    expect(await pixel(png, 7, 5)).toEqual([10, 200, 30]);
  });

  it('accepts a Uint8Array view into a larger buffer (engine output from a worker)', async () => {
    const backing = new Uint8Array(10 + 2 * 2 * 3);
    backing.fill(99);
    const view = backing.subarray(10);
    view.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const png = await rgbToPng(view, 2, 2);
    expect(await pixel(png, 1, 1)).toEqual([10, 11, 12]);
  });

  it('rejects a buffer of the wrong length clearly', async () => {
    await expect(pngWithParameters(new Uint8Array(10), 8, 6, INFO)).rejects.toThrow(/needs 144/);
  });
});

describe('makeGrid', () => {
  it('chooses the layout from the count', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 9].map((n) => gridLayout(n))).toEqual([
      { columns: 1, rows: 1 },
      { columns: 2, rows: 1 },
      { columns: 2, rows: 2 },
      { columns: 2, rows: 2 },
      { columns: 3, rows: 2 },
      { columns: 3, rows: 2 },
      { columns: 3, rows: 3 },
      { columns: 3, rows: 3 },
    ]);
    expect(() => gridLayout(0)).toThrow();
  });

  const colors: [number, number, number][] = [
    [255, 0, 0],
    [0, 255, 0],
    [0, 0, 255],
    [255, 255, 0],
  ];
  const pictures = () =>
    Promise.all(colors.map((c, i) => pngWithParameters(solid(8, 6, c), 8, 6, INFO.replace('Seed: 41', `Seed: ${41 + i}`))));

  it('puts four pictures in a 2x2 grid in reading order and carries picture 1 parameters', async () => {
    const grid = await makeGrid(await pictures());
    expect([grid.width, grid.height]).toEqual([16, 12]);
    const meta = await sharp(grid.png).metadata();
    expect([meta.width, meta.height]).toEqual([16, 12]);
    expect(await pixel(grid.png, 0, 0)).toEqual(colors[0]);
    expect(await pixel(grid.png, 15, 0)).toEqual(colors[1]);
    expect(await pixel(grid.png, 0, 11)).toEqual(colors[2]);
    expect(await pixel(grid.png, 15, 11)).toEqual(colors[3]);
    const chunks = readTextChunks(grid.png);
    expect(chunks.find((c) => c.keyword === 'parameters')?.text).toBe(INFO);
    expect(chunks.find((c) => c.keyword === 'Comment')?.text).toMatch(/Grid of 4 pictures \(2x2\).*picture 1/);
  });

  it('composes the same grid from the packed RGB it is given as from decoding the PNGs', async () => {
    // Pictures with detail in every pixel, so a misplaced or mis-strided cell shows.
    const raw = colors.map((c, i) => {
      const rgb = new Uint8Array(8 * 6 * 3);
      for (let p = 0; p < rgb.length; p++) rgb[p] = (c[p % 3]! + p * 7 + i * 31) & 0xff;
      return { rgb, width: 8, height: 6 };
    });
    const pngs = await Promise.all(raw.map((r) => pngWithParameters(r.rgb, 8, 6, INFO)));
    const fromPngs = await makeGrid(pngs);
    const fromRaw = await makeGrid(pngs, raw);
    const pixels = (png: Buffer) => sharp(png).raw().toBuffer();
    expect((await pixels(fromRaw.png)).equals(await pixels(fromPngs.png))).toBe(true);
    expect(readTextChunks(fromRaw.png)).toEqual(readTextChunks(fromPngs.png));
  });

  it('lays two side by side, leaves a dark cell for three, and returns one unchanged', async () => {
    const pics = await pictures();
    const two = await makeGrid(pics.slice(0, 2));
    expect([two.width, two.height]).toEqual([16, 6]);
    expect(await pixel(two.png, 15, 5)).toEqual(colors[1]);

    const three = await makeGrid(pics.slice(0, 3));
    expect([three.width, three.height]).toEqual([16, 12]);
    expect(await pixel(three.png, 0, 11)).toEqual(colors[2]);
    const empty = await pixel(three.png, 15, 11);
    expect(Math.max(...empty)).toBeLessThan(40);

    const one = await makeGrid(pics.slice(0, 1));
    expect(one.png).toBe(pics[0]);
    expect([one.width, one.height]).toEqual([8, 6]);
  });

  it('refuses an empty list and non-images clearly', async () => {
    await expect(makeGrid([])).rejects.toThrow(/at least one/);
    await expect(makeGrid([Buffer.from('nope'), Buffer.from('nope')])).rejects.toThrow();
  });
});

describe('encodeForDelivery', () => {
  async function noisyPng(width: number, height: number): Promise<Buffer> {
    return pngWithParameters(new Uint8Array(randomBytes(width * height * 3)), width, height, INFO);
  }

  it('returns the PNG itself when it fits', async () => {
    const png = await pngWithParameters(solid(64, 64, [1, 2, 3]), 64, 64, INFO);
    const out = await encodeForDelivery(png, 10 * 1024 * 1024);
    expect(out.data).toBe(png);
    expect([out.format, out.ext, out.width, out.height]).toEqual(['png', 'png', 64, 64]);
  });

  it('fits a noisy 2048x2048 picture under 200 KB as WebP, and as JPEG when asked', async () => {
    const png = await noisyPng(2048, 2048);
    expect(png.length).toBeGreaterThan(10 * 1024 * 1024);
    const limit = 200 * 1024;

    const webp = await encodeForDelivery(png, limit);
    expect(webp.data.length).toBeLessThanOrEqual(limit);
    const wm = await sharp(webp.data).metadata();
    expect([wm.format, webp.format, webp.ext]).toEqual(['webp', 'webp', 'webp']);
    expect([wm.width, wm.height]).toEqual([webp.width, webp.height]);
    // Still a picture worth looking at, not a thumbnail.
    expect(webp.width).toBeGreaterThanOrEqual(256);
    expect(webp.width).toBe(webp.height);

    const jpeg = await encodeForDelivery(png, limit, { prefer: 'jpeg' });
    expect(jpeg.data.length).toBeLessThanOrEqual(limit);
    expect((await sharp(jpeg.data).metadata()).format).toBe('jpeg');
    expect(jpeg.ext).toBe('jpg');
  });

  it('uses JPEG when the destination takes only PNG or JPEG (Telegram photos)', async () => {
    const png = await noisyPng(512, 512);
    const out = await encodeForDelivery(png, 100 * 1024, { formats: ['png', 'jpeg'] });
    expect(out.format).toBe('jpeg');
    expect(out.data.length).toBeLessThanOrEqual(100 * 1024);
  });

  it('shrinks a PNG when PNG is the only format allowed', async () => {
    const png = await noisyPng(256, 256);
    const out = await encodeForDelivery(png, 50 * 1024, { formats: ['png'] });
    expect(out.format).toBe('png');
    expect(out.data.length).toBeLessThanOrEqual(50 * 1024);
    expect(out.width).toBeLessThan(256);
  });

  it("respects Telegram's width + height and aspect-ratio limits", async () => {
    const tall = await pngWithParameters(solid(10, 300, [200, 0, 0]), 10, 300, INFO);
    const out = await encodeForDelivery(tall, 10 * 1024 * 1024, { maxSideSum: 200, maxAspect: 20 });
    const meta = await sharp(out.data).metadata();
    expect(meta.width! + meta.height!).toBeLessThanOrEqual(200);
    expect(meta.height! / meta.width!).toBeLessThanOrEqual(20);
    expect([meta.width, meta.height]).toEqual([out.width, out.height]);
    // Only the geometry had to change, so it stays lossless.
    expect(out.format).toBe('png');

    const wide = await pngWithParameters(solid(300, 10, [0, 0, 200]), 300, 10, INFO);
    const bars = await encodeForDelivery(wide, 10 * 1024 * 1024, { maxAspect: 20 });
    expect(bars.width).toBe(300);
    expect(bars.height).toBe(15);
  });

  it('rejects nonsense limits and inputs clearly', async () => {
    const png = await pngWithParameters(solid(4, 4, [0, 0, 0]), 4, 4, INFO);
    await expect(encodeForDelivery(png, 0)).rejects.toThrow(/positive/);
    await expect(encodeForDelivery(Buffer.from('not an image'), 1000)).rejects.toThrow();
  });
});
