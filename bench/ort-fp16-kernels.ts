// npx tsx bench/ort-fp16-kernels.ts
//
// Which ops the installed onnxruntime-node's CPU provider runs in float16 itself, and which it
// runs through Casts it inserts around a float32 kernel (the reason the CPU provider gets float32
// arithmetic: checkpoint/graph-form.ts). Each op is built alone on float16 tensors, the session
// writes its final graph, and an inserted Cast in it means there is no float16 kernel.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../engine/onnx-build/graph.js';

const half = (dims: number[]) => new ort.Tensor('float16', new Uint16Array(dims.reduce((a, b) => a * b, 1)).fill(0x3c00), dims);

interface Case {
  op: string;
  /** Input shapes; every input is float16. */
  inputs: number[][];
  out: number[];
  attrs?: Parameters<GraphBuilder['op']>[2];
  domain?: string;
  extra?: (g: GraphBuilder) => string[];
}

const square = [4, 4];
const image = [1, 4, 8, 8];
const CASES: Case[] = [
  ...['MatMul', 'Add', 'Mul', 'Div'].map((op) => ({ op, inputs: [square, square], out: square })),
  ...['Sigmoid', 'Erf', 'Cos', 'Sin', 'Transpose'].map((op) => ({ op, inputs: [square], out: square })),
  { op: 'Softmax', inputs: [square], out: square, attrs: { axis: { i: -1 } } },
  { op: 'Conv', inputs: [image, [4, 4, 3, 3]], out: image, attrs: { pads: { ints: [1, 1, 1, 1] } } },
  { op: 'LayerNormalization', inputs: [[2, 4], [4], [4]], out: [2, 4], attrs: { axis: { i: -1 } } },
  { op: 'InstanceNormalization', inputs: [[1, 4, 8], [4], [4]], out: [1, 4, 8] },
  { op: 'Resize', inputs: [image], out: [1, 4, 16, 16], attrs: { mode: { s: 'nearest' } }, extra: (g) => ['', g.float32s(Float32Array.of(1, 1, 2, 2), [4])] },
  { op: 'MultiHeadAttention', inputs: [[1, 6, 8], [1, 6, 8], [1, 6, 8]], out: [1, 6, 8], attrs: { num_heads: { i: 2 } }, domain: 'com.microsoft' },
];

const dir = await mkdtemp(path.join(tmpdir(), 'ort-fp16-'));
try {
  console.log(`onnxruntime-node ${ort.env.versions.common}, CPU provider:`);
  for (const c of CASES) {
    const g = new GraphBuilder(c.op);
    if (c.domain !== undefined) g.useOpset(c.domain, 1);
    const names = c.inputs.map((dims, i) => g.input(`x${i}`, 'float16', dims));
    g.output(g.op(c.op, [...names, ...(c.extra?.(g) ?? [])], c.attrs ?? {}, c.domain === undefined ? {} : { domain: c.domain }), 'y', 'float16', c.out);
    const file = path.join(dir, `${c.op}.onnx`);
    const session = await ort.InferenceSession.create(await g.encode(), { graphOptimizationLevel: 'disabled', optimizedModelFilePath: file });
    await session.run(Object.fromEntries(c.inputs.map((dims, i) => [`x${i}`, half(dims)])));
    await session.release();
    const casts = /\bCast\b/.test(await readFile(file, 'latin1'));
    console.log(`  ${c.op.padEnd(22)} ${casts ? 'no float16 kernel: runs in float32 between inserted Casts' : 'float16 kernel'}`);
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
