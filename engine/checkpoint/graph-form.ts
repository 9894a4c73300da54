// Which graph form (onnx-build/layers.ts) a prepared model gets, from the execution providers it
// will run on and the dtype the checkpoint stores. Measured on this project's CPU (README of this
// folder, "Graph forms at full size"):
//   - CPU: float16 weights kept float16 in memory and cast at each use (fp16-resident) when the
//     file is fp16: half the disk, a 2 s / 125 MB session load instead of 20 s / 4 GB (the
//     weights stay in the memory-mapped file), a 3.3 GB UNet peak at 512² instead of 4.5 GB, and
//     the same step time within 1.4 % (bench/unet-forms-alternate.ts). fp16-storage (Casts
//     folded at load) is the fp32 graph in memory after a slower, higher-peak load; fp16 compute
//     has no float16 MatMul/Conv kernels on the CPU provider (bench/ort-fp16-kernels.ts). Fused
//     attention (com.microsoft MultiHeadAttention, which the CPU provider implements): within
//     1e-5 of the plain ops, and the UNet's 512² peak falls from 7–9 GB to 3.3–4.5 GB.
//   - CUDA: fp16 weights and arithmetic when the file is fp16, fused attention (flash /
//     memory-efficient kernels). Not measured here: no GPU on the development machine.
//   - WebGPU: fp16 weights and arithmetic, plain attention ops (not measured either, and the
//     WebGPU provider's contrib-op coverage varies by version).
// fp32 and bf16 files keep float32 weights everywhere: bf16 values above 65504 or below 2^-24
// do not survive a conversion to fp16, and an fp32 file's precision is what its author chose.
import type { GraphForm } from '../onnx-build/layers.js';
import type { ExecutionProviderName } from '../types.js';
import type { StoredDtype } from './detect.js';

export function graphFormFor(providers: readonly ExecutionProviderName[], dtype: StoredDtype): GraphForm {
  // The first provider is the one the UNet is meant to run on; a fallback to CPU still runs any form.
  const first = providers[0] ?? 'cpu';
  const half = dtype === 'fp16';
  if (first === 'cuda') return { precision: half ? 'fp16' : 'fp32', attention: 'fused' };
  if (first === 'webgpu') return { precision: half ? 'fp16' : 'fp32', attention: 'plain' };
  return { precision: half ? 'fp16-resident' : 'fp32', attention: 'fused' };
}

/** The form's part of a cache key: '' for the reference form, so entries built before forms existed stay valid. */
export function formKey(form: GraphForm): string {
  const precision = { fp32: '', 'fp16-storage': '-h16s', 'fp16-resident': '-h16r', fp16: '-h16' }[form.precision];
  return precision + (form.attention === 'fused' ? '-mha' : '');
}
