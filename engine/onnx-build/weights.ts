// Where a graph builder gets its weights: by canonical name (the layout the builder is written
// against), as float32, one tensor at a time. A checkpoint's own layout is mapped onto the
// canonical one by a name function, so the same builder serves every file layout of a model.

export interface WeightSource {
  /** The tensor's shape, or undefined when it is absent. */
  shape(name: string): readonly number[] | undefined;
  float32(name: string): Promise<Float32Array>;
}

/** What a SafetensorsFile offers (kept structural so tests can pass plain maps). */
export interface TensorReader {
  readonly header: { readonly tensors: ReadonlyMap<string, { readonly shape: readonly number[] }> };
  readFloat32(name: string): Promise<Float32Array>;
}

/** Canonical name → file name by prefix substitution (e.g. SD 1.x CLIP under cond_stage_model.transformer.text_model.). */
export function prefixedSource(file: TensorReader, prefix: string): WeightSource {
  return {
    shape: (name) => file.header.tensors.get(prefix + name)?.shape,
    float32: (name) => file.readFloat32(prefix + name),
  };
}

export function requireShape(source: WeightSource, name: string, rank?: number): readonly number[] {
  const shape = source.shape(name);
  if (shape === undefined) throw new Error(`the weights have no tensor "${name}"`);
  if (rank !== undefined && shape.length !== rank) {
    throw new Error(`tensor "${name}" has shape [${shape.join(', ')}]; expected ${rank} dimensions`);
  }
  return shape;
}

/** A [rows, cols] matrix transposed to [cols, rows] (PyTorch Linear stores [out, in]; MatMul wants [in, out]). */
export function transpose2d(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) {
    const row = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = m[row + c]!;
  }
  return out;
}

export function float32Bytes(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
