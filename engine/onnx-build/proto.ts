// Protocol-buffer wire format, write side only: the engine writes ONNX models and never needs a
// general protobuf library. Messages are built bottom-up (a child is finished, then embedded with
// its length), which suits ONNX's tree of small messages around a few large byte fields.

const VARINT = 0;
const FIXED32 = 5;
const BYTES = 2;

export class ProtoWriter {
  private readonly parts: Uint8Array[] = [];
  private pending: number[] = [];
  private size = 0;

  private flush(): void {
    if (this.pending.length === 0) return;
    this.parts.push(Uint8Array.from(this.pending));
    this.size += this.pending.length;
    this.pending = [];
  }

  /** Base-128 varint; negative numbers as 64-bit two's complement (ten bytes), as int64 fields want. */
  varint(value: number | bigint): this {
    let v = BigInt.asUintN(64, BigInt(value));
    do {
      const low = Number(v & 0x7fn);
      v >>= 7n;
      this.pending.push(v === 0n ? low : low | 0x80);
    } while (v !== 0n);
    return this;
  }

  private tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, VARINT);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.pending.push(...b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, BYTES);
    this.varint(value.length);
    this.flush();
    // Large payloads (weights) are kept by reference until finish(), not copied twice.
    this.parts.push(value);
    this.size += value.length;
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtoWriter) => void): this {
    const child = new ProtoWriter();
    build(child);
    return this.bytes(field, child.finish());
  }

  /** Packed repeated varints (e.g. int64 dims, ints attributes). */
  packedInts(field: number, values: ReadonlyArray<number | bigint>): this {
    const child = new ProtoWriter();
    for (const v of values) child.varint(v);
    return this.bytes(field, child.finish());
  }

  /** Packed repeated float32s (e.g. floats attributes). */
  packedFloats(field: number, values: ArrayLike<number>): this {
    const b = new Uint8Array(values.length * 4);
    const view = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i] ?? 0, true);
    return this.bytes(field, b);
  }

  finish(): Uint8Array {
    this.flush();
    if (this.parts.length === 1) return this.parts[0]!;
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }
}
