// Builds ONNX graphs in code and writes them as ModelProto (field numbers from onnx/onnx.proto).
// Architectures (CLIP text encoder, VAE, UNet) are written against this small builder; weights
// are attached as lazy producers so a model can be written tensor by tensor into an external
// data file — a multi-gigabyte UNet is never held in memory whole, and protobuf's 2 GB message
// limit never applies because the weights are not inside the message.
import { open } from 'node:fs/promises';
import { float32ToFloat16Bits } from '../fp16.js';
import { ProtoWriter } from './proto.js';

/** TensorProto.DataType codes used here. */
export const ElemType = { float32: 1, int32: 6, int64: 7, float16: 10 } as const;
export type ElemTypeName = keyof typeof ElemType;
const ELEM_BYTES: Record<ElemTypeName, number> = { float32: 4, int32: 4, int64: 8, float16: 2 };

export type Dim = number | string;

export type AttrValue = { i: number } | { f: number } | { s: string } | { ints: readonly number[] } | { floats: readonly number[] };
export type Attrs = Readonly<Record<string, AttrValue>>;

interface NodeRecord {
  opType: string;
  domain: string;
  name: string;
  inputs: readonly string[];
  outputs: readonly string[];
  attrs: Attrs;
}

interface ValueRecord {
  name: string;
  type: ElemTypeName;
  dims: readonly Dim[];
}

export interface InitializerRecord extends ValueRecord {
  dims: readonly number[];
  /** Produces the little-endian element bytes; called once, when the model is written. */
  data: () => Uint8Array | Promise<Uint8Array>;
}

export class GraphBuilder {
  private readonly nodes: NodeRecord[] = [];
  private readonly inputs: ValueRecord[] = [];
  private readonly outputs: ValueRecord[] = [];
  private readonly initializers: InitializerRecord[] = [];
  private readonly overridable: ValueRecord[] = [];
  private readonly names = new Set<string>();
  private readonly opsets = new Map<string, number>([['', 17]]);
  private counter = 0;

  constructor(readonly name: string) {}

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`graph value "${name}" is defined twice`);
    this.names.add(name);
    return name;
  }

  private fresh(hint: string): string {
    let name: string;
    do name = `${hint}_${this.counter++}`;
    while (this.names.has(name));
    return name;
  }

  input(name: string, type: ElemTypeName, dims: readonly Dim[]): string {
    this.inputs.push({ name: this.claim(name), type, dims });
    return name;
  }

  /** Declares `value` as a graph output called `name` (renaming through Identity when needed). */
  output(value: string, name: string, type: ElemTypeName, dims: readonly Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { output: name });
    this.outputs.push({ name, type, dims });
  }

  /**
   * A weight stored in the model. `overridable` also lists it among the graph inputs (a default
   * value a caller could replace): onnxruntime then treats it as a variable, so it never folds the
   * ops that consume it into new constants at load (see layers.ts, 'fp16-resident'). Such inputs
   * are not in a session's inputNames.
   */
  initializer(name: string, type: ElemTypeName, dims: readonly number[], data: InitializerRecord['data'], opts: { overridable?: boolean } = {}): string {
    this.initializers.push({ name: this.claim(name), type, dims, data });
    if (opts.overridable === true) this.overridable.push({ name, type, dims });
    return name;
  }

  /** A small int64 constant (shapes, axes). */
  int64s(values: readonly number[], hint = 'const'): string {
    const bytes = new Uint8Array(BigInt64Array.from(values.map((v) => BigInt(v))).buffer);
    return this.initializer(this.fresh(hint), 'int64', [values.length], () => bytes);
  }

  /** A float32 constant of the given shape. */
  float32s(values: Float32Array, dims: readonly number[], hint = 'const'): string {
    const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    return this.initializer(this.fresh(hint), 'float32', dims, () => bytes);
  }

  /** A float16 constant of the given shape, rounded from float32 values (to nearest even). */
  float16s(values: Float32Array, dims: readonly number[], hint = 'const'): string {
    const bits = float32ToFloat16Bits(values);
    return this.initializer(this.fresh(hint), 'float16', dims, () => new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
  }

  useOpset(domain: string, version: number): void {
    this.opsets.set(domain, version);
  }

  /** Adds a one-output node and returns its output's name. */
  op(opType: string, inputs: readonly string[], attrs: Attrs = {}, opts: { output?: string; domain?: string } = {}): string {
    return this.opN(opType, inputs, 1, attrs, opts)[0]!;
  }

  opN(
    opType: string,
    inputs: readonly string[],
    outputCount: number,
    attrs: Attrs = {},
    opts: { output?: string; domain?: string } = {},
  ): string[] {
    const outputs = Array.from({ length: outputCount }, (_, i) =>
      i === 0 && opts.output !== undefined ? this.claim(opts.output) : this.claim(this.fresh(opType)),
    );
    this.nodes.push({ opType, domain: opts.domain ?? '', name: this.fresh(`n_${opType}`), inputs, outputs, attrs });
    return outputs;
  }

  get initializerList(): readonly InitializerRecord[] {
    return this.initializers;
  }

  /** The model with every initializer inline (small models, tests). */
  async encode(): Promise<Uint8Array> {
    const data = new Map<string, Uint8Array>();
    for (const init of this.initializers) data.set(init.name, await producedBytes(init));
    return this.encodeWith((init, t) => t.bytes(9, data.get(init.name)!));
  }

  /**
   * Writes `modelPath`, with initializers of at least `minExternalBytes` streamed one at a time
   * into `dataPath` (named in the model by its base name `dataLocation`). Returns the data bytes written.
   */
  async writeWithExternalData(
    modelPath: string,
    dataPath: string,
    dataLocation: string,
    opts: { minExternalBytes?: number; onTensor?: (done: number, total: number) => void; signal?: AbortSignal } = {},
  ): Promise<number> {
    const minExternalBytes = opts.minExternalBytes ?? 1024;
    const placed = new Map<string, { offset: number; length: number }>();
    const inline = new Map<string, Uint8Array>();
    const fh = await open(dataPath, 'w');
    let offset = 0;
    try {
      for (const [index, init] of this.initializers.entries()) {
        opts.signal?.throwIfAborted();
        opts.onTensor?.(index, this.initializers.length);
        const bytes = await producedBytes(init);
        if (bytes.length < minExternalBytes) {
          inline.set(init.name, bytes);
          continue;
        }
        // Page-aligned offsets let onnxruntime map the weights instead of copying them.
        offset = Math.ceil(offset / 4096) * 4096;
        await fh.write(bytes, 0, bytes.length, offset);
        placed.set(init.name, { offset, length: bytes.length });
        offset += bytes.length;
      }
      opts.onTensor?.(this.initializers.length, this.initializers.length);
    } finally {
      await fh.close();
    }
    const model = this.encodeWith((init, t) => {
      const at = placed.get(init.name);
      if (at === undefined) {
        t.bytes(9, inline.get(init.name)!);
        return;
      }
      for (const [key, value] of [
        ['location', dataLocation],
        ['offset', String(at.offset)],
        ['length', String(at.length)],
      ] as const) {
        t.message(13, (e) => e.string(1, key).string(2, value));
      }
      t.int(14, 1); // data_location = EXTERNAL
    });
    const out = await open(modelPath, 'w');
    try {
      await out.write(model);
    } finally {
      await out.close();
    }
    return offset;
  }

  private encodeWith(writeData: (init: InitializerRecord, t: ProtoWriter) => void): Uint8Array {
    const model = new ProtoWriter();
    model.int(1, 8); // ir_version 8 (opset 17 era)
    model.string(2, 'club-imagine-bot');
    for (const [domain, version] of this.opsets) model.message(8, (o) => o.string(1, domain).int(2, version));
    model.message(7, (g) => {
      for (const n of this.nodes) g.message(1, (w) => writeNode(w, n));
      g.string(2, this.name);
      for (const init of this.initializers) {
        g.message(5, (t) => {
          t.packedInts(1, init.dims);
          t.int(2, ElemType[init.type]);
          t.string(8, init.name);
          writeData(init, t);
        });
      }
      for (const v of [...this.inputs, ...this.overridable]) g.message(11, (w) => writeValueInfo(w, v));
      for (const v of this.outputs) g.message(12, (w) => writeValueInfo(w, v));
    });
    return model.finish();
  }
}

async function producedBytes(init: InitializerRecord): Promise<Uint8Array> {
  const bytes = await init.data();
  const expected = init.dims.reduce((a, b) => a * b, 1) * ELEM_BYTES[init.type];
  if (bytes.length !== expected) {
    throw new Error(`initializer "${init.name}" [${init.dims.join(', ')}] ${init.type} got ${bytes.length} bytes, expected ${expected}`);
  }
  return bytes;
}

function writeNode(w: ProtoWriter, n: NodeRecord): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, n.name);
  w.string(4, n.opType);
  for (const [name, value] of Object.entries(n.attrs)) w.message(5, (a) => writeAttr(a, name, value));
  if (n.domain !== '') w.string(7, n.domain);
}

function writeAttr(w: ProtoWriter, name: string, v: AttrValue): void {
  w.string(1, name);
  if ('f' in v) w.float(2, v.f).int(20, 1);
  else if ('i' in v) w.int(3, v.i).int(20, 2);
  else if ('s' in v) w.string(4, v.s).int(20, 3);
  else if ('floats' in v) {
    for (const f of v.floats) w.float(7, f);
    w.int(20, 6);
  } else {
    w.packedInts(8, v.ints).int(20, 7);
  }
}

function writeValueInfo(w: ProtoWriter, v: ValueRecord): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ElemType[v.type]);
      tensor.message(2, (shape) => {
        for (const d of v.dims) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}
