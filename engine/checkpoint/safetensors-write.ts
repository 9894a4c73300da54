// Writes .safetensors files. The engine needs this for random-weight checkpoints (tests and the
// full-size measuring script) and later for merged LoRA variants. The header is fixed before any
// data is written, so each tensor's bytes are produced and written one at a time: writing a
// multi-gigabyte file never holds more than one tensor in memory.
import { open } from 'node:fs/promises';
import { dtypeBytes, elementCount, type SafetensorsDtype } from './safetensors.js';

export interface TensorToWrite {
  name: string;
  dtype: SafetensorsDtype;
  shape: readonly number[];
  /** Called once, in file order, when this tensor's bytes are due. */
  data: () => Uint8Array | Promise<Uint8Array>;
}

/** The header bytes (length prefix + JSON padded with spaces to 8 bytes, as the reference writer does). */
export function encodeSafetensorsHeader(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header['__metadata__'] = metadata;
  let offset = 0;
  for (const t of tensors) {
    const size = elementCount(t.shape) * dtypeBytes(t.dtype);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const body = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.write(encodeSafetensorsHeader(tensors, metadata));
    for (const t of tensors) {
      const bytes = await t.data();
      const expected = elementCount(t.shape) * dtypeBytes(t.dtype);
      if (bytes.length !== expected) {
        throw new Error(`tensor "${t.name}" produced ${bytes.length} bytes; its header says ${expected}`);
      }
      await fh.write(bytes);
    }
  } finally {
    await fh.close();
  }
}

/** Views a typed array's bytes without copying. */
export function bytesOf(a: Float32Array | Uint16Array | Int32Array | BigInt64Array | Float64Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
