// Reads a model.onnx file's graph inputs and outputs (names, element types, dims) and the
// external data files its initializers point at — without creating a session and without
// reading the weights: length-delimited fields we do not need (initializers inline in a
// 500 MB text encoder) are skipped by seeking past them. This keeps scanning the models folder
// cheap while still telling export generations apart by their declared IO.
import { open, type FileHandle } from 'node:fs/promises';

/** TensorProto.DataType codes the engine cares about. */
export const OnnxElemType = { FLOAT: 1, INT32: 6, INT64: 7, FLOAT16: 10, DOUBLE: 11, BFLOAT16: 16 } as const;

export interface OnnxValueDecl {
  name: string;
  elemType: number;
  /** Fixed sizes as numbers, symbolic dims as strings, unknown dims as '?'; undefined when no shape is declared. */
  dims: (number | string)[] | undefined;
}

export interface OnnxSignature {
  inputs: OnnxValueDecl[];
  outputs: OnnxValueDecl[];
  /** `location` values of initializers stored as external data (relative to the model file's folder). */
  externalFiles: string[];
  /**
   * Per external file, the least size it must have: the largest `offset + length` its
   * initializers declare (0 when they declare none). A shorter file is a truncated download.
   */
  externalBytesNeeded: Record<string, number>;
}

const WINDOW = 64 * 1024;
/** External-data TensorProtos are tiny (no payload); anything larger holds inline weights we skip. */
const SMALL_TENSOR = 16 * 1024;

class FileCursor {
  private window = Buffer.alloc(0);
  private windowStart = 0;
  pos = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  private async ensure(n: number): Promise<void> {
    if (this.pos >= this.windowStart && this.pos + n <= this.windowStart + this.window.length) return;
    if (this.pos + n > this.size) throw new Error('unexpected end of file');
    const length = Math.min(Math.max(WINDOW, n), this.size - this.pos);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await this.fh.read(buf, 0, length, this.pos);
    this.window = buf.subarray(0, bytesRead);
    this.windowStart = this.pos;
    if (bytesRead < n) throw new Error('unexpected end of file');
  }

  async byte(): Promise<number> {
    await this.ensure(1);
    const b = this.window[this.pos - this.windowStart] ?? 0;
    this.pos += 1;
    return b;
  }

  async varint(): Promise<number> {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = await this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('malformed varint');
  }

  async bytes(n: number): Promise<Buffer> {
    await this.ensure(n);
    const start = this.pos - this.windowStart;
    this.pos += n;
    return Buffer.from(this.window.subarray(start, start + n));
  }
}

/** In-memory reader for the small messages we decode fully. */
class BufferCursor {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error('unexpected end of message');
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new Error('malformed varint');
  }
  bytes(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw new Error('unexpected end of message');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.bytes(8);
    else if (wire === 5) this.bytes(4);
    else if (wire === 2) this.bytes(this.varint());
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

/** Calls `onField` for each field of a message held in memory. */
function eachField(buf: Buffer, onField: (field: number, wire: number, c: BufferCursor) => void): void {
  const c = new BufferCursor(buf);
  while (!c.done) {
    const tag = c.varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    const before = c.pos;
    onField(field, wire, c);
    if (c.pos === before) c.skip(wire);
  }
}

function readDims(shape: Buffer): (number | string)[] {
  const dims: (number | string)[] = [];
  eachField(shape, (field, wire, c) => {
    if (field !== 1 || wire !== 2) return;
    let dim: number | string = '?';
    eachField(c.bytes(c.varint()), (f, w, d) => {
      if (f === 1 && w === 0) dim = d.varint();
      else if (f === 2 && w === 2) dim = d.bytes(d.varint()).toString('utf8');
    });
    dims.push(dim);
  });
  return dims;
}

function readValueInfo(buf: Buffer): OnnxValueDecl {
  const decl: OnnxValueDecl = { name: '', elemType: 0, dims: undefined };
  eachField(buf, (field, wire, c) => {
    if (field === 1 && wire === 2) decl.name = c.bytes(c.varint()).toString('utf8');
    else if (field === 2 && wire === 2) {
      eachField(c.bytes(c.varint()), (f, w, t) => {
        if (f !== 1 || w !== 2) return; // tensor_type only
        eachField(t.bytes(t.varint()), (tf, tw, tt) => {
          if (tf === 1 && tw === 0) decl.elemType = tt.varint();
          else if (tf === 2 && tw === 2) decl.dims = readDims(tt.bytes(tt.varint()));
        });
      });
    }
  });
  return decl;
}

/** Where an initializer's bytes live, when stored as external data (offset/length: decimal strings in the file). */
function readExternalPlacement(tensor: Buffer): { location: string; end: number } | undefined {
  let location: string | undefined;
  let offset = 0;
  let length = 0;
  eachField(tensor, (field, wire, c) => {
    if (field !== 13 || wire !== 2) return;
    let key = '';
    let value = '';
    eachField(c.bytes(c.varint()), (f, w, e) => {
      if (f === 1 && w === 2) key = e.bytes(e.varint()).toString('utf8');
      else if (f === 2 && w === 2) value = e.bytes(e.varint()).toString('utf8');
    });
    if (key === 'location') location = value;
    else if (key === 'offset') offset = Number(value) || 0;
    else if (key === 'length') length = Number(value) || 0;
  });
  return location === undefined ? undefined : { location, end: length > 0 ? offset + length : 0 };
}

async function skipField(c: FileCursor, wire: number): Promise<void> {
  if (wire === 0) await c.varint();
  else if (wire === 1) c.pos += 8;
  else if (wire === 5) c.pos += 4;
  else if (wire === 2) {
    // Read the length first: `c.pos += await …` would add it to the position before the varint.
    const length = await c.varint();
    c.pos += length;
  } else throw new Error(`unsupported wire type ${wire}`);
  if (c.pos > c.size) throw new Error('field runs past the end of the file');
}

async function readGraph(c: FileCursor, end: number, sig: OnnxSignature): Promise<void> {
  while (c.pos < end) {
    const tag = await c.varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 2 && (field === 11 || field === 12)) {
      const decl = readValueInfo(await c.bytes(await c.varint()));
      (field === 11 ? sig.inputs : sig.outputs).push(decl);
    } else if (wire === 2 && field === 5) {
      const length = await c.varint();
      if (length <= SMALL_TENSOR) {
        const placement = readExternalPlacement(await c.bytes(length));
        if (placement !== undefined) {
          const { location, end } = placement;
          if (!sig.externalFiles.includes(location)) sig.externalFiles.push(location);
          sig.externalBytesNeeded[location] = Math.max(sig.externalBytesNeeded[location] ?? 0, end);
        }
      } else {
        c.pos += length;
      }
    } else {
      await skipField(c, wire);
    }
  }
  if (c.pos !== end) throw new Error('graph message is malformed');
}

/** Throws an Error with a short reason when the file is not a readable ONNX model. */
export async function readOnnxSignature(file: string): Promise<OnnxSignature> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const c = new FileCursor(fh, size);
    const sig: OnnxSignature = { inputs: [], outputs: [], externalFiles: [], externalBytesNeeded: {} };
    let sawGraph = false;
    while (c.pos < size) {
      const tag = await c.varint();
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 0) throw new Error('not an ONNX model (bad field tag)');
      if (field === 7 && wire === 2) {
        const length = await c.varint();
        const end = c.pos + length;
        if (end > size) throw new Error('graph runs past the end of the file (truncated download?)');
        await readGraph(c, end, sig);
        sawGraph = true;
      } else {
        await skipField(c, wire);
      }
    }
    if (!sawGraph || sig.inputs.length === 0) throw new Error('not an ONNX model (no graph inputs)');
    return sig;
  } finally {
    await fh.close();
  }
}
