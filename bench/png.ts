// npx tsx bench/png.ts [--size 512] [--repeats 15]
//
// Which sharp PNG setting the bot should use for its pictures: time and size per 512×512 picture
// (CPU time) for today's setting and candidates, on three kinds of content (there are no real SD pictures in
// the repository, so they are synthesised): a photo-like picture (smooth shading, fine texture and
// sensor-like noise), an illustration (flat areas, hard edges, gradients) and pure noise (what a
// random-weight model draws). Prints each candidate's median time and size relative to today's.
import { parseArgs } from 'node:util';
import sharp, { type PngOptions } from 'sharp';
import { makeGrid, pngWithParameters } from '../src/render/index.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: '512' }, repeats: { type: 'string', default: '15' } } });
const SIDE = Number(values.size);
const REPEATS = Number(values.repeats);

/** Deterministic noise so every run compares the same pictures. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function picture(kind: 'photo' | 'illustration' | 'noise'): Uint8Array {
  const rgb = new Uint8Array(SIDE * SIDE * 3);
  const rand = lcg(kind.length * 7919);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      for (let c = 0; c < 3; c++) {
        let v: number;
        if (kind === 'noise') v = rand() * 256;
        else if (kind === 'photo') {
          const shade = 128 + 70 * Math.sin(x / 37 + c) * Math.cos(y / 53 - c) + 30 * Math.sin((x + y) / 11);
          v = shade + 12 * Math.sin(x * 0.9 + y * 1.3 + c) + (rand() - 0.5) * 10;
        } else {
          const cell = ((x >> 6) + (y >> 6) * 3 + c) % 5;
          v = cell < 2 ? 40 + cell * 90 : cell === 4 ? (x + y) / 4 : 220 - ((x * c) % 64);
        }
        rgb[(y * SIDE + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return rgb;
}

const CANDIDATES: Record<string, PngOptions> = {
  'today: level 6, no filter': { compressionLevel: 6 },
  'level 6, adaptive filter': { compressionLevel: 6, adaptiveFiltering: true },
  'level 5, no filter': { compressionLevel: 5 },
  'level 4, no filter': { compressionLevel: 4 },
  'level 3, no filter': { compressionLevel: 3 },
  'level 2, no filter': { compressionLevel: 2 },
  'level 1, no filter': { compressionLevel: 1 },
  'level 3, adaptive filter': { compressionLevel: 3, adaptiveFiltering: true },
  'level 1, adaptive filter': { compressionLevel: 1, adaptiveFiltering: true },
};

async function encode(rgb: Uint8Array, options: PngOptions): Promise<{ ms: number; bytes: number }> {
  const times: number[] = [];
  let bytes = 0;
  for (let r = 0; r < REPEATS + 2; r++) {
    // CPU time of the process (sharp's encoder thread included), not wall time: on a shared
    // machine wall time mostly measures the neighbours.
    const c0 = process.cpuUsage();
    const png = await sharp(Buffer.from(rgb.buffer), { raw: { width: SIDE, height: SIDE, channels: 3 } }).png(options).toBuffer();
    const c1 = process.cpuUsage(c0);
    if (r >= 2) times.push((c1.user + c1.system) / 1000);
    bytes = png.length;
  }
  times.sort((a, b) => a - b);
  return { ms: times[times.length >> 1]!, bytes };
}

/** CPU ms (median) of a 2×2 grid of four photo-like pictures, composed from their PNGs or from their RGB. */
async function gridCost(fromRaw: boolean): Promise<number> {
  const raw = [0, 1, 2, 3].map(() => ({ rgb: picture('photo'), width: SIDE, height: SIDE }));
  const pngs = await Promise.all(raw.map((r) => pngWithParameters(r.rgb, SIDE, SIDE, 'a fox\nSteps: 20, Seed: 1')));
  const times: number[] = [];
  for (let r = 0; r < REPEATS + 2; r++) {
    const c0 = process.cpuUsage();
    await makeGrid(pngs, fromRaw ? raw : undefined);
    const c1 = process.cpuUsage(c0);
    if (r >= 2) times.push((c1.user + c1.system) / 1000);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

async function main(): Promise<void> {
  // One encode at a time, like the bot's render step, so the figures are per picture.
  sharp.concurrency(1);
  process.stdout.write(`PNG encode CPU time per ${SIDE}x${SIDE} picture, sharp ${sharp.versions.sharp}, median of ${REPEATS}\n`);
  for (const kind of ['photo', 'illustration', 'noise'] as const) {
    const rgb = picture(kind);
    const base = await encode(rgb, CANDIDATES['today: level 6, no filter']!);
    process.stdout.write(`\n${kind}\n`);
    for (const [name, options] of Object.entries(CANDIDATES)) {
      const got = name.startsWith('today') ? base : await encode(rgb, options);
      process.stdout.write(
        `  ${name.padEnd(28)} ${got.ms.toFixed(1).padStart(6)} ms  ${(got.bytes / 1024).toFixed(0).padStart(5)} KB` +
          `   time ×${(got.ms / base.ms).toFixed(2)}  size ×${(got.bytes / base.bytes).toFixed(3)}\n`,
      );
    }
  }
  const [fromPngs, fromRaw] = [await gridCost(false), await gridCost(true)];
  process.stdout.write(
    `\n2x2 grid of four ${SIDE}x${SIDE} pictures (the bot's setting): from the PNGs ${fromPngs.toFixed(1)} ms, ` +
      `from the RGB the engine returned ${fromRaw.toFixed(1)} ms (CPU, median)\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:png: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
