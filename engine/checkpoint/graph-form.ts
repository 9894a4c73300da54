// Which graph form (onnx-build/layers.ts) a prepared model gets, from the execution providers it
// will run on and the dtype the checkpoint stores. Measured on this project's CPU (README of this
// folder, "Graph forms"):
//   - CPU: float16 weights stored, Cast to float32 at load (fp16-storage) when the file is fp16:
//     half the disk and the same arithmetic as the fp32 graph (bit-identical outputs). fp16
//     compute on the CPU provider is slower (few fp16 kernels: onnxruntime inserts casts) and
//     less exact, so never chosen for it. Attention fused (com.microsoft MultiHeadAttention, which
//     the CPU provider implements): within 1e-5 of the plain ops and smaller at 512².
//   - CUDA: fp16 weights and arithmetic when the file is fp16, fused attention (flash /
//     memory-efficient kernels).
//   - WebGPU: fp16 weights and arithmetic, plain attention ops (not measured here: no GPU on
//     the development machine, and the WebGPU provider's contrib-op coverage varies by version).
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
  return { precision: half ? 'fp16-storage' : 'fp32', attention: 'fused' };
}

/** The form's part of a cache key: '' for the reference form, so entries built before forms existed stay valid. */
export function formKey(form: GraphForm): string {
  const precision = { fp32: '', 'fp16-storage': '-h16s', 'fp16-resident': '-h16r', fp16: '-h16' }[form.precision];
  return precision + (form.attention === 'fused' ? '-mha' : '');
}
