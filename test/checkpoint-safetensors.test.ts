import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../engine/checkpoint/errors.js';
import {
  SafetensorsFile,
  openFileSource,
  parseSafetensorsHeader,
  type ByteSource,
} from '../engine/checkpoint/safetensors.js';
import { bytesOf, encodeSafetensorsHeader, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ckpt-safetensors-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A file whose header is exactly `json` (no padding), followed by `data`. */
async function rawFile(name: string, json: string, data: Uint8Array = new Uint8Array(0), declared?: bigint): Promise<string> {
  const body = Buffer.from(json, 'utf8');
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(declared ?? BigInt(body.length));
  const file = path.join(dir, name);
  await writeFile(file, Buffer.concat([head, body, data]));
  return file;
}

async function refusal(file: string): Promise<CheckpointError> {
  try {
    const f = await SafetensorsFile.open(file);
    await f.close();
  } catch (err) {
    expect(err).toBeInstanceOf(CheckpointError);
    return err as CheckpointError;
  }
  throw new Error(`${file} was accepted`);
}

const values = Float32Array.from([1.5, -2, 0.333, 65504, -1e-5, 3.14159]);

async function sampleFile(name = 'sample.safetensors'): Promise<string> {
  const file = path.join(dir, name);
  const bf16 = new Uint16Array(new Uint32Array(values.buffer.slice(0)).map((v) => v >>> 16));
  await writeSafetensors(
    file,
    [
      { name: 'w.f32', dtype: 'F32', shape: [2, 3], data: () => bytesOf(values) },
      { name: 'w.f16', dtype: 'F16', shape: [6], data: () => bytesOf(float32ToFloat16Bits(values)) },
      { name: 'w.bf16', dtype: 'BF16', shape: [3, 2], data: () => bytesOf(bf16) },
      { name: 'ids', dtype: 'I64', shape: [1, 4], data: () => bytesOf(BigInt64Array.from([0n, 1n, 2n, 3n])) },
      { name: 'scalar', dtype: 'F32', shape: [], data: () => bytesOf(Float32Array.of(7)) },
    ],
    { format: 'pt', note: 'test' },
  );
  return file;
}

describe('safetensors reader', () => {
  it('reads header, metadata and every float dtype as float32', async () => {
    const f = await SafetensorsFile.open(await sampleFile());
    try {
      expect(f.names).toEqual(['w.f32', 'w.f16', 'w.bf16', 'ids', 'scalar']);
      expect(f.header.metadata).toEqual({ format: 'pt', note: 'test' });
      expect(f.entry('w.bf16')).toMatchObject({ dtype: 'BF16', shape: [3, 2] });
      expect([...(await f.readFloat32('w.f32'))]).toEqual([...values]);
      const f16 = await f.readFloat32('w.f16');
      for (let i = 0; i < values.length; i++) expect(f16[i]).toBeCloseTo(values[i]!, 2);
      // bf16 keeps 8 mantissa bits: truncation of 1.5 and -2 is exact, 3.14159 → 3.140625.
      const bf = await f.readFloat32('w.bf16');
      expect([bf[0], bf[1], bf[5]]).toEqual([1.5, -2, 3.140625]);
      expect([...(await f.readFloat32('scalar'))]).toEqual([7]);
      expect(new BigInt64Array((await f.readBytes('ids')).buffer)).toEqual(BigInt64Array.from([0n, 1n, 2n, 3n]));
    } finally {
      await f.close();
    }
  });

  it('converts to float16 bits from every float dtype, F16 passing through unchanged', async () => {
    const f = await SafetensorsFile.open(await sampleFile('f16.safetensors'));
    try {
      const expected = float32ToFloat16Bits(values);
      expect(await f.readFloat16('w.f16')).toEqual(expected);
      expect(await f.readFloat16('w.f32')).toEqual(expected);
      // bf16 → f16 goes through f32: 65504 truncated to bf16 is 65280, representable in f16.
      expect((await f.readFloat16('w.bf16'))[0]).toBe(expected[0]);
    } finally {
      await f.close();
    }
  });

  it('refuses to read a non-float tensor as weights, and names a missing tensor', async () => {
    const f = await SafetensorsFile.open(await sampleFile('ints.safetensors'));
    try {
      await expect(f.readFloat32('ids')).rejects.toMatchObject({ reason: 'unsupported-dtype', message: /"ids" is I64/ });
      await expect(f.readFloat32('nope')).rejects.toMatchObject({ reason: 'missing-tensor' });
    } finally {
      await f.close();
    }
  });

  it('reads only the header at open and only one tensor per read (streaming, not whole-file)', async () => {
    const file = await sampleFile('counted.safetensors');
    const inner = await openFileSource(file);
    let bytesRead = 0;
    const counting: ByteSource = {
      size: inner.size,
      read: async (into, pos) => {
        const n = await inner.read(into, pos);
        bytesRead += n;
        return n;
      },
      close: () => inner.close(),
    };
    const f = await SafetensorsFile.open(counting, 'counted');
    expect(bytesRead).toBe(f.header.dataStart);
    bytesRead = 0;
    await f.readFloat32('w.f16');
    expect(bytesRead).toBe(12);
    await f.close();
  });

  it('pads the header to 8 bytes as the reference writer does', () => {
    const h = encodeSafetensorsHeader([{ name: 'a', dtype: 'F32', shape: [1], data: () => new Uint8Array(4) }]);
    expect(h.length % 8).toBe(0);
  });
});

describe('safetensors refusals', () => {
  it('refuses a file shorter than the length prefix', async () => {
    const file = path.join(dir, 'tiny.safetensors');
    await writeFile(file, Buffer.from([1, 2, 3]));
    expect(await refusal(file)).toMatchObject({ reason: 'truncated', message: /tiny\.safetensors is cut short/ });
  });

  it('refuses a header length beyond the end of the file', async () => {
    const file = await rawFile('longheader.safetensors', '{}', undefined, 5000n);
    expect(await refusal(file)).toMatchObject({ reason: 'truncated', message: /header alone should be 5000 bytes/ });
  });

  it('refuses an absurd header length (a corrupt prefix, not a big model)', async () => {
    const file = await rawFile('huge.safetensors', '{}', undefined, 1n << 60n);
    expect(await refusal(file)).toMatchObject({ reason: 'bad-header' });
  });

  it('refuses a header that is not JSON, or not an object', async () => {
    expect(await refusal(await rawFile('badjson.safetensors', '{"a": [1,'))).toMatchObject({
      reason: 'bad-header',
      message: /not valid UTF-8 JSON/,
    });
    expect(await refusal(await rawFile('array.safetensors', '[1, 2]'))).toMatchObject({ message: /not a JSON object/ });
    expect(await refusal(await rawFile('meta.safetensors', '{"__metadata__": {"a": 1}}'))).toMatchObject({
      message: /__metadata__/,
    });
  });

  it('refuses a truncated download: tensors described past the end of the file', async () => {
    const file = await sampleFile('cut.safetensors');
    const full = (await readFile(file)).length;
    await truncate(file, full - 10);
    const err = await refusal(file);
    expect(err.reason).toBe('truncated');
    expect(err.message).toMatch(/download the file again/i);
  });

  it('refuses overlapping offsets, gaps, trailing bytes and reversed ranges', async () => {
    const f32 = (begin: number, end: number) => ({ dtype: 'F32', shape: [2], data_offsets: [begin, end] });
    const data = new Uint8Array(16);
    const overlap = await rawFile('overlap.safetensors', JSON.stringify({ a: f32(0, 8), b: f32(4, 12) }), data.subarray(0, 12));
    expect(await refusal(overlap)).toMatchObject({ reason: 'bad-offsets', message: /overlaps/ });
    const gap = await rawFile('gap.safetensors', JSON.stringify({ a: f32(0, 8), b: f32(12, 20) }), new Uint8Array(20));
    expect(await refusal(gap)).toMatchObject({ reason: 'bad-offsets', message: /gap before tensor "b"/ });
    const trailing = await rawFile('trailing.safetensors', JSON.stringify({ a: f32(0, 8) }), data);
    expect(await refusal(trailing)).toMatchObject({ reason: 'bad-offsets', message: /8 bytes after the last tensor/ });
    const reversed = await rawFile('reversed.safetensors', JSON.stringify({ a: f32(8, 0) }), data.subarray(0, 8));
    expect(await refusal(reversed)).toMatchObject({ reason: 'bad-header', message: /ends \(0\) before it begins/ });
  });

  it('refuses a dtype/shape/byte-length mismatch and unknown dtypes', async () => {
    const mismatch = await rawFile(
      'mismatch.safetensors',
      JSON.stringify({ a: { dtype: 'F16', shape: [3], data_offsets: [0, 12] } }),
      new Uint8Array(12),
    );
    expect(await refusal(mismatch)).toMatchObject({ reason: 'bad-tensor', message: /needs 6 bytes but its offsets span 12/ });
    const unknown = await rawFile(
      'unknown.safetensors',
      JSON.stringify({ a: { dtype: 'F12', shape: [1], data_offsets: [0, 2] } }),
      new Uint8Array(2),
    );
    expect(await refusal(unknown)).toMatchObject({ reason: 'bad-header', message: /unknown dtype "F12"/ });
    const badShape = await rawFile(
      'shape.safetensors',
      JSON.stringify({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }),
      new Uint8Array(4),
    );
    expect(await refusal(badShape)).toMatchObject({ message: /malformed shape/ });
  });

  it('parses headers without a file (pure rules)', () => {
    const json = new TextEncoder().encode(JSON.stringify({ x: { dtype: 'BF16', shape: [2, 2], data_offsets: [0, 8] } }));
    const h = parseSafetensorsHeader(json, 8 + json.length + 8, 'h');
    expect(h.tensors.get('x')).toMatchObject({ dtype: 'BF16', begin: 0, end: 8 });
    expect(() => parseSafetensorsHeader(json, 8 + json.length + 4, 'h')).toThrow(CheckpointError);
  });
});
