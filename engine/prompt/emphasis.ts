// A1111's "Original" emphasis: multiply each token's hidden state by its weight, then rescale the
// whole chunk so its mean (over every position and channel) is what it was before weighting.
// Applied per chunk, after the text encoder, on [77, width] float32 hidden states.

export function applyEmphasis(hidden: Float32Array, multipliers: Float32Array, width: number): Float32Array {
  const positions = multipliers.length;
  if (hidden.length !== positions * width) throw new Error(`emphasis: ${hidden.length} values are not ${positions} positions × ${width}`);
  if (multipliers.every((m) => m === 1)) return hidden;
  const out = new Float32Array(hidden.length);
  let before = 0;
  let after = 0;
  for (let p = 0; p < positions; p++) {
    const m = multipliers[p]!;
    for (let c = 0; c < width; c++) {
      const v = hidden[p * width + c]!;
      before += v;
      const w = v * m;
      out[p * width + c] = w;
      after += w;
    }
  }
  // Means over the same count, so the ratio of sums is the ratio of means.
  const scale = before / after;
  for (let i = 0; i < out.length; i++) out[i] = out[i]! * scale;
  return out;
}
