// npx tsx bench/unet-forms-alternate.ts [--width 160] [--rounds 3] [--forms fp32:fused,fp16-resident:fused]
//
// Step time of graph forms, compared fairly on a busy machine: SD 1.5's UNet at reduced width
// (every channel count scaled by width/320, so a fraction of the weights and compute with the
// same structure and token counts; random weights, no file) is built once per form into a temp
// folder, all sessions are loaded together, and timed UNet calls at 512² with guidance (batch 2)
// are taken in turn, A B A B …, after one warm-up each, so load from other processes falls on
// every form alike. Small enough to run without the full-size lock at width ≤ 160.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import type { AttentionForm, GraphForm, GraphPrecision } from '../engine/onnx-build/layers.js';
import { buildUnetGraph, UNET_HEADS } from '../engine/onnx-build/unet.js';
import type { WeightSource } from '../engine/onnx-build/weights.js';
import layout from '../test/fixtures/reference/sd15_layout.json' with { type: 'json' };

const { values } = parseArgs({ options: { width: { type: 'string', default: '160' }, rounds: { type: 'string', default: '3' }, forms: { type: 'string', default: 'fp32:fused,fp16-resident:fused' } } });
const scale = Number(values.width) / 320;
const PREFIX = 'model.diffusion_model.';
// Channel counts are multiples of 320 (and 960/1920 concatenations); the 768-wide context, the
// 4 latent channels and kernel sizes are not, and stay.
const scaled = (shape: number[]) => shape.map((d) => (d >= 320 && d % 320 === 0 ? d * scale : d));
const shapes = new Map(
  Object.entries(layout.tensors as Record<string, number[]>)
    .filter(([n]) => n.startsWith(PREFIX))
    .map(([n, s]) => [n.slice(PREFIX.length), scaled(s)]),
);
const source: WeightSource = {
  shape: (name) => shapes.get(name),
  // Small values keep the activations finite through 16 res blocks (the generator spans ±1).
  float32: async (name) => syntheticTensor(name, shapes.get(name)!).map((v) => v * 0.05),
};

const forms = values.forms.split(',').map((f) => {
  const [precision, attention] = f.split(':') as [GraphPrecision, AttentionForm];
  return { label: f, form: { precision, attention } satisfies GraphForm };
});
const dir = await mkdtemp(path.join(tmpdir(), 'unet-forms-'));
try {
  const sessions: ort.InferenceSession[] = [];
  for (const { label, form } of forms) {
    const model = path.join(dir, `${label.replace(':', '-')}.onnx`);
    await buildUnetGraph(source, UNET_HEADS.sd1, form).writeWithExternalData(model, `${model}_data`, `${path.basename(model)}_data`);
    sessions.push(await ort.InferenceSession.create(model, { logSeverityLevel: 3 }));
  }
  const feeds = {
    sample: new ort.Tensor('float32', new Float32Array(2 * 4 * 64 * 64).fill(0.1), [2, 4, 64, 64]),
    timestep: new ort.Tensor('float32', Float32Array.of(500, 500), [2]),
    encoder_hidden_states: new ort.Tensor('float32', new Float32Array(2 * 77 * 768).fill(0.01), [2, 77, 768]),
  };
  const step = async (s: ort.InferenceSession) => {
    const t0 = performance.now();
    await s.run(feeds);
    return (performance.now() - t0) / 1000;
  };
  for (const s of sessions) await step(s);
  const times: number[][] = forms.map(() => []);
  for (let r = 0; r < Number(values.rounds); r++) for (const [i, s] of sessions.entries()) times[i]!.push(await step(s));
  const params = [...shapes.values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  console.log(`UNet at width ${values.width} (${(params / 1e6).toFixed(0)} M parameters), 512², batch 2, ${values.rounds} rounds in turn:`);
  for (const [i, { label }] of forms.entries()) {
    const t = times[i]!;
    console.log(`  ${label.padEnd(22)} ${t.map((x) => x.toFixed(2)).join(' / ')} s  (median ${[...t].sort((a, b) => a - b)[Math.floor(t.length / 2)]!.toFixed(2)} s)`);
  }
  for (const s of sessions) await s.release();
} finally {
  await rm(dir, { recursive: true, force: true });
}
