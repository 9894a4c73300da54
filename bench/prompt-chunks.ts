// What a long prompt costs: `npm run bench:prompt -- <model folder> [--size 512] [--chunks 1,2,8]`.
// For each chunk count: the text encoder on prompt + negative (2 × chunks rows, one call, through
// engine/conditioning.ts) and one UNet call (batch 1) with that much conditioning, each timed after
// one untimed call at the same shapes. Prints one JSON line per chunk count. Run full-size models
// under the shared lock: `flock /tmp/fullsize.lock nice -n 10 npm run bench:prompt -- DIR`.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodePrompts, modelTextEncoder } from '../engine/conditioning.js';
import { loadModel } from '../engine/model.js';
import { scanModels } from '../engine/registry.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '512' }, chunks: { type: 'string', default: '1,2,8' } },
});
const dir = positionals[0];
if (!dir) {
  process.stderr.write('usage: npm run bench:prompt -- <model folder> [--size 512] [--chunks 1,2,8]\n');
  process.exit(2);
}
const side = Number(values.size) / 8;
const counts = values.chunks.split(',').map(Number);

const scan = await scanModels(path.dirname(path.resolve(dir)));
const info = scan.models.find((m) => m.dir === path.resolve(dir));
if (!info) {
  process.stderr.write(`${dir} is not a usable model folder: ${scan.problems.find((p) => p.dir === path.resolve(dir))?.reason ?? 'not found'}\n`);
  process.exit(2);
}
const model = await loadModel(info, { providers: ['cpu'] });
const words = ['red', 'fox', 'snow', 'forest', 'light', 'detailed', 'photo', 'winter'];

async function timed<T>(run: () => Promise<T>): Promise<{ ms: number; value: T }> {
  await run();
  const t0 = performance.now();
  const value = await run();
  return { ms: Math.round(performance.now() - t0), value };
}

for (const chunks of counts) {
  // 75 single-token words per chunk (no commas, so no backtracking moves words between chunks).
  const prompt = Array.from({ length: 75 * chunks }, (_, i) => words[i % words.length]).join(' ');
  const text = await timed(() =>
    encodePrompts(prompt, 'blurry', { tokenizer: model.tokenizer, encoder: modelTextEncoder(model), guidance: true, maxChunks: 32, modelName: info.name }),
  );
  const cond = text.value.hidden.slice(0, text.value.tokens * text.value.width);
  const sample = new Float32Array(4 * side * side).fill(0.1);
  const unet = await timed(() => model.unet(sample, 1, side, side, 500, cond));
  process.stdout.write(`${JSON.stringify({ chunks, tokens: text.value.tokens, textEncoderMs: text.ms, unetMs: unet.ms, size: side * 8 })}\n`);
}
await model.release();
