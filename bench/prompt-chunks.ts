// What a long prompt costs: `npm run bench:prompt -- <model folder> [--size 512] [--chunks 1,2,8]
// [--text-only]`. For each chunk count: the text encoder on prompt + negative (2 × chunks rows, one
// call, through engine/conditioning.ts) and one UNet call (batch 1) with that much conditioning,
// each timed after one untimed call at the same shapes. Prints one JSON line per chunk count.
// `--text-only` opens just text_encoder/ (0.5 GB for SD 1.5) and skips the UNet; a full model
// needs the shared lock: `flock /tmp/fullsize.lock nice -n 10 npm run bench:prompt -- DIR`.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { encodePrompts } from '../engine/conditioning.js';
import * as ort from 'onnxruntime-node';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { textEncoderOf } from '../engine/pipeline.js';
import { scanModels } from '../engine/registry.js';
import { ClipTokenizer } from '../engine/tokenizer.js';
import type { ModelInfo } from '../engine/types.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { size: { type: 'string', default: '512' }, chunks: { type: 'string', default: '1,2,8' }, 'text-only': { type: 'boolean', default: false } },
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
const textOnly = values['text-only'] === true;
const model = textOnly ? await textEncoderOnly(info) : await loadModel(info, { providers: ['cpu'] });
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
    encodePrompts(prompt, 'blurry', { tokenizer: model.tokenizer, encoder: textEncoderOf(model), guidance: true, maxChunks: 32, modelName: info.name }),
  );
  const cond = text.value.hidden.slice(0, text.value.tokens * text.value.width);
  const sample = new Float32Array(4 * side * side).fill(0.1);
  const unet = textOnly ? undefined : await timed(() => model.unet(sample, 1, side, side, 500, cond));
  process.stdout.write(`${JSON.stringify({ chunks, tokens: text.value.tokens, textEncoderMs: text.ms, ...(unet ? { unetMs: unet.ms, size: side * 8 } : {}) })}\n`);
}
await model.release();

/** Just the tokenizer and text encoder, as LoadedModel's text half (the UNet is never called). */
async function textEncoderOnly(info: ModelInfo): Promise<LoadedModel> {
  const folder = info.dir;
  const tokenizer = await ClipTokenizer.load(path.join(folder, 'tokenizer'));
  const session = await ort.InferenceSession.create(path.join(folder, 'text_encoder', 'model.onnx'));
  const width = 768;
  const unavailable = (): never => {
    throw new Error('--text-only opened no UNet or VAE');
  };
  return {
    info,
    provider: 'cpu',
    tokenizer,
    scheduler: undefined as never,
    vaeScalingFactor: 0,
    hiddenDim: width,
    acceptsEmbeddings: false,
    async encodeText(ids) {
      const seq = ids[0]!.length;
      const data = new Int32Array(ids.length * seq);
      ids.forEach((row, b) => data.set(row, b * seq));
      const out = await session.run({ input_ids: new ort.Tensor('int32', data, [ids.length, seq]) });
      return out['last_hidden_state']!.data as Float32Array;
    },
    unet: unavailable,
    vaeDecode: unavailable,
    release: () => session.release(),
    holding: (_part, fn) => fn(),
  };
}
