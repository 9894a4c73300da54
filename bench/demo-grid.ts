// npm run bench:demo [-- --repeats 7]
//
// How long the bundled demo model takes to draw a 2×2 grid, as a newcomer's first `/imagine` or
// `npm run imagine -- "red heart" --n 4` does (20 steps DPM++ 2M Karras, CFG 7): the model load
// once, then each grid's generation time in the engine, and the whole CLI process (Node start,
// load, generation, PNG files) timed from outside. Prints minimum, median and maximum.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createEngine } from '../engine/index.js';
import { DEMO_MODELS_DIR } from '../engine/registry.js';

const { values } = parseArgs({ options: { repeats: { type: 'string', default: '7' } } });
const REPEATS = Math.max(1, Number(values.repeats) || 7);

function spread(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const f = (v: number): string => `${(v / 1000).toFixed(2)} s`;
  return `min ${f(s[0]!)}, median ${f(s[Math.floor(s.length / 2)]!)}, max ${f(s.at(-1)!)}`;
}

const work = mkdtempSync(path.join(tmpdir(), 'bench-demo-'));
const engine = createEngine({
  modelsDir: path.join(work, 'no-models'),
  fallbackModelsDir: DEMO_MODELS_DIR,
  providers: ['cpu'],
  modelCacheDir: path.join(work, 'cache'),
  log: { info: () => undefined, warn: () => undefined },
});
try {
  console.log(`load average ${loadavg().map((v) => v.toFixed(1)).join(' ')}; ${REPEATS} grids`);
  const info = (await engine.scanModels()).models[0]!;
  const draw = (seed: number) =>
    engine.generate(
      { model: info.name, prompt: 'red heart', negativePrompt: '', width: info.nativeWidth, height: info.nativeHeight, steps: 20, guidance: 7, sampler: 'DPM++ 2M Karras', seed, count: 4 },
      {},
    );
  let t = performance.now();
  await draw(1);
  console.log(`first grid, model load included: ${((performance.now() - t) / 1000).toFixed(2)} s`);
  const grids: number[] = [];
  for (let i = 0; i < REPEATS; i++) {
    t = performance.now();
    await draw(100 + i);
    grids.push(performance.now() - t);
  }
  console.log(`2×2 grid, generation in a loaded engine: ${spread(grids)}`);
} finally {
  await engine.close();
}

const cli: number[] = [];
const tsx = path.join('node_modules', '.bin', 'tsx');
for (let i = 0; i < Math.min(REPEATS, 5); i++) {
  const t = performance.now();
  execFileSync(tsx, ['engine/cli.ts', '--models-dir', path.join(work, 'no-models'), '--cache-dir', path.join(work, 'cache'), 'red heart', '--n', '4', '--seed', String(200 + i), '-q', '-o', path.join(work, 'grid.png')], { stdio: 'ignore' });
  cli.push(performance.now() - t);
}
console.log(`whole CLI process (npm run imagine -- "red heart" --n 4, without npm's own start): ${spread(cli)}`);
rmSync(work, { recursive: true, force: true });
