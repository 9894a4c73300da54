// Reads .safetensors files: an 8-byte little-endian header length, that many bytes of JSON
// ({ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { string: string } }),
// then the tensors' bytes, offsets counted from the end of the header.
//
// Checkpoints are 2–7 GB, so nothing here loads a whole file: the header is read and checked
// once, then each tensor is read on its own with a positioned read, so peak memory stays near
// the largest single tensor (plus its converted copy). Every check the format allows is made up
// front — a truncated download or a corrupt header is refused when the file is opened, not
// half-way through building a model.
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { endianness } from 'node:os';
import { CheckpointError } from './errors.js';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../fp16.js';

/** Bytes per element of every dtype the format defines. */
const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** The dtypes whose values the engine converts to float32/float16 weights. */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];

/** The reference implementation's limit; a larger "header" is a corrupt length, not a big model. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Byte offsets relative to the start of the data section. */
  readonly begin: number;
  readonly end: number;
}

export interface SafetensorsHeader {
  /** Where the data section starts in the file (8 + header length). */
  readonly dataStart: number;
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Random access to the file's bytes; tests pass their own to count what is read. */
export interface ByteSource {
  readonly size: number;
  /** Fills `into` from `position` as far as the source allows; returns the bytes read. */
  read(into: Uint8Array, position: number): Promise<number>;
  close(): Promise<void>;
}

export async function openFileSource(path: string): Promise<ByteSource> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    return {
      size,
      async read(into, position) {
        // A single read() call is capped near 2 GiB and may return short: loop until full or EOF.
        let done = 0;
        while (done < into.length) {
          const length = Math.min(into.length - done, 1 << 30);
          const { bytesRead } = await fh.read(into, done, length, position + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      },
      close: () => fh.close(),
    };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function isDtype(s: unknown): s is SafetensorsDtype {
  return typeof s === 'string' && Object.hasOwn(DTYPE_BYTES, s);
}

export function dtypeBytes(dtype: SafetensorsDtype): number {
  return DTYPE_BYTES[dtype];
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isSize(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Checks a header's JSON against the format and the file's size. `label` names the file in
 * messages. Pure, so the rules are testable on headers alone.
 */
export function parseSafetensorsHeader(json: Uint8Array, fileSize: number, label: string): SafetensorsHeader {
  const bad = (why: string): never => {
    throw new CheckpointError('bad-header', `${label} is not a valid .safetensors file: ${why}.`);
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(json));
  } catch {
    return bad('its header is not valid UTF-8 JSON');
  }
  if (!isObject(parsed)) return bad('its header is not a JSON object');

  const dataStart = 8 + json.length;
  const dataBytes = fileSize - dataStart;
  const tensors = new Map<string, TensorEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === '__metadata__') {
      if (!isObject(raw) || !Object.values(raw).every((v) => typeof v === 'string')) {
        return bad('"__metadata__" must map strings to strings');
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    if (!isObject(raw)) return bad(`entry "${name}" is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (!isDtype(dtype)) return bad(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isSize)) return bad(`tensor "${name}" has a malformed shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isSize)) {
      return bad(`tensor "${name}" has malformed data_offsets`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) return bad(`tensor "${name}" ends (${end}) before it begins (${begin})`);
    const expected = elementCount(shape as number[]) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw new CheckpointError(
        'bad-tensor',
        `${label} is not a valid .safetensors file: tensor "${name}" (${dtype} [${(shape as number[]).join(', ')}]) ` +
          `needs ${expected} bytes but its offsets span ${end - begin}.`,
      );
    }
    tensors.set(name, { name, dtype, shape: shape as number[], begin, end });
  }

  // The data section must be covered exactly: no overlaps, no holes, nothing past its end.
  // Anything past the end of the file means the download stopped early.
  const ordered = [...tensors.values()].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  for (const t of ordered) {
    if (t.begin < covered) {
      throw new CheckpointError('bad-offsets', `${label} is not a valid .safetensors file: tensor "${t.name}" overlaps another tensor.`);
    }
    if (t.begin > covered) {
      throw new CheckpointError('bad-offsets', `${label} is not a valid .safetensors file: there is a gap before tensor "${t.name}".`);
    }
    covered = t.end;
  }
  if (covered > dataBytes) {
    throw new CheckpointError(
      'truncated',
      `${label} is cut short: its header describes ${covered} bytes of tensors but only ${Math.max(dataBytes, 0)} follow. ` +
        'The download probably stopped early; download the file again.',
    );
  }
  if (covered < dataBytes) {
    throw new CheckpointError(
      'bad-offsets',
      `${label} is not a valid .safetensors file: ${dataBytes - covered} bytes after the last tensor belong to none.`,
    );
  }
  return { dataStart, tensors, metadata };
}

/** Reads and checks the 8-byte length and the JSON header; nothing of the tensor data is read. */
export async function readSafetensorsHeader(source: ByteSource, label: string): Promise<SafetensorsHeader> {
  if (source.size < 8) {
    throw new CheckpointError('truncated', `${label} is cut short: ${source.size} bytes is less than a .safetensors header.`);
  }
  const lengthBytes = new Uint8Array(8);
  await source.read(lengthBytes, 0);
  const declared = new DataView(lengthBytes.buffer).getBigUint64(0, true);
  if (declared > BigInt(MAX_HEADER_BYTES)) {
    throw new CheckpointError(
      'bad-header',
      `${label} is not a valid .safetensors file: it declares a ${declared} byte header (the format allows ${MAX_HEADER_BYTES}).`,
    );
  }
  const length = Number(declared);
  if (8 + length > source.size) {
    throw new CheckpointError(
      'truncated',
      `${label} is cut short: its header alone should be ${length} bytes but the file has ${source.size - 8} after the length. ` +
        'Download the file again.',
    );
  }
  const json = new Uint8Array(length);
  await source.read(json, 8);
  return parseSafetensorsHeader(json, source.size, label);
}

// Typed-array views below reinterpret file bytes directly, which is only right on a
// little-endian host (every platform onnxruntime-node ships for).
const LITTLE_ENDIAN = endianness() === 'LE';

/** bfloat16 is the top half of a float32: widening is a shift. */
export function bfloat16BitsToFloat32(src: Uint16Array): Float32Array {
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/** An opened .safetensors file; tensors are read one at a time on demand. */
export class SafetensorsFile {
  private constructor(
    private readonly source: ByteSource,
    readonly label: string,
    readonly header: SafetensorsHeader,
  ) {}

  static async open(pathOrSource: string | ByteSource, label?: string): Promise<SafetensorsFile> {
    if (!LITTLE_ENDIAN) throw new Error('reading .safetensors needs a little-endian host');
    const source = typeof pathOrSource === 'string' ? await openFileSource(pathOrSource) : pathOrSource;
    const name = label ?? (typeof pathOrSource === 'string' ? basename(pathOrSource) : 'weights file');
    try {
      return new SafetensorsFile(source, name, await readSafetensorsHeader(source, name));
    } catch (err) {
      await source.close();
      throw err;
    }
  }

  get names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  entry(name: string): TensorEntry {
    const t = this.header.tensors.get(name);
    if (t === undefined) throw new CheckpointError('missing-tensor', `${this.label} has no tensor "${name}".`);
    return t;
  }

  /** The tensor's raw little-endian bytes, in a fresh buffer aligned for any typed-array view. */
  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.entry(name);
    const bytes = new Uint8Array(new ArrayBuffer(t.end - t.begin));
    const got = await this.source.read(bytes, this.header.dataStart + t.begin);
    if (got !== bytes.length) {
      // The size was checked at open; a shorter read means the file shrank since.
      throw new CheckpointError('truncated', `${this.label} was cut short while tensor "${name}" was being read.`);
    }
    return bytes;
  }

  private async readFloatBits(name: string): Promise<{ dtype: SafetensorsDtype; bytes: Uint8Array }> {
    const t = this.entry(name);
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new CheckpointError(
        'unsupported-dtype',
        `${this.label}: tensor "${name}" is ${t.dtype}; only F32, F16, BF16 and F64 weights can be used.`,
      );
    }
    return { dtype: t.dtype, bytes: await this.readBytes(name) };
  }

  /** The tensor's values as float32, whatever float dtype the file stores. */
  async readFloat32(name: string): Promise<Float32Array> {
    const { dtype, bytes } = await this.readFloatBits(name);
    switch (dtype) {
      case 'F32':
        return new Float32Array(bytes.buffer);
      case 'F16':
        return float16BitsToFloat32(new Uint16Array(bytes.buffer));
      case 'BF16':
        return bfloat16BitsToFloat32(new Uint16Array(bytes.buffer));
      default:
        return Float32Array.from(new Float64Array(bytes.buffer));
    }
  }

  /** The tensor's values as float16 bit patterns (rounded to nearest even from wider dtypes). */
  async readFloat16(name: string): Promise<Uint16Array> {
    const t = this.entry(name);
    if (t.dtype === 'F16') return new Uint16Array((await this.readFloatBits(name)).bytes.buffer);
    return float32ToFloat16Bits(await this.readFloat32(name));
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}
