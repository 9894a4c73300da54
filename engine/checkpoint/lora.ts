// LoRA merged into a checkpoint's weights: W' = W + Σ_lora weight × (alpha / rank) × up · down,
// with up [out, rank] and down [rank, in·kh·kw] (a conv's kernel flattened, so 1×1 and 3×3
// convs and Linears are the same matrix product). The merged weights are presented as a
// TensorReader under the checkpoint's own names, so the model-folder writer builds a variant
// folder from them exactly as it builds the plain one; a model without LoRAs never goes through
// here.
import type { TensorReader } from '../onnx-build/weights.js';
import { detectWeights, type Family, type TensorShapes } from './detect.js';
import { CheckpointError } from './errors.js';
import { loraModules, loraTargetTable, type LoraTarget } from './lora-names.js';

const FAMILY_NAME: Record<Family, string> = { sd1: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL' };

export interface LoraInput {
  /** The name members use (`<lora:NAME:…>`): the file name without extension. */
  name: string;
  file: TensorReader;
  textEncoderWeight: number;
  unetWeight: number;
}

interface PlannedModule {
  lora: LoraInput;
  target: LoraTarget;
  down: string;
  up: string;
  alpha?: string;
  rank: number;
  /** Columns of the flattened target (in · kh · kw). */
  cols: number;
  rows: number;
}

export interface LoraPlan {
  /** Checkpoint tensor → the modules that change it. */
  byTensor: Map<string, PlannedModule[]>;
  /** Per LoRA: modules applied and LoRA modules with no tensor in this checkpoint (A1111 skips those too). */
  report: { name: string; applied: number; skipped: string[] }[];
}

/** The family a LoRA file was trained for, or a refusal naming it. */
export function loraFamily(name: string, tensors: TensorShapes): Family {
  const info = detectWeights(tensors);
  if (info.kind !== 'lora') throw new CheckpointError('not-weights', `LoRA "${name}" is not a LoRA file.`);
  if (!info.supported) throw new CheckpointError('unsupported-family', `LoRA "${name}" cannot be used: ${info.reason ?? 'unsupported'}.`);
  if (info.family === 'unknown') throw new CheckpointError('unknown-family', `LoRA "${name}" matches no Stable Diffusion family.`);
  return info.family;
}

/** Refuses a LoRA trained for another family, by name. */
export function assertLoraFits(name: string, loraFamilyOf: Family, modelFamily: Family): void {
  if (loraFamilyOf !== modelFamily) {
    throw new CheckpointError(
      'unsupported-family',
      `LoRA "${name}" is for ${FAMILY_NAME[loraFamilyOf]} models; this model is ${FAMILY_NAME[modelFamily]}. Pick a ${FAMILY_NAME[modelFamily]} LoRA.`,
    );
  }
}

const product = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

/** Matches every LoRA module to a checkpoint tensor and checks the shapes; no weights are read. */
export function planLoras(checkpoint: TensorReader, loras: readonly LoraInput[]): LoraPlan {
  const ckpt = checkpoint.header.tensors;
  const table = loraTargetTable(ckpt.keys(), (n) => ckpt.get(n)?.shape);
  const byTensor = new Map<string, PlannedModule[]>();
  const report: LoraPlan['report'] = [];
  for (const lora of loras) {
    const shapes = lora.file.header.tensors;
    const { modules } = loraModules(shapes.keys());
    let applied = 0;
    const skipped: string[] = [];
    for (const m of modules) {
      const target = table.get(m.key);
      if (target === undefined) {
        skipped.push(m.key);
        continue;
      }
      const down = shapes.get(m.down)!.shape;
      const up = shapes.get(m.up)!.shape;
      const base = ckpt.get(target.tensor)!.shape;
      const rank = down[0]!;
      const rows = target.rows ?? base[0]!;
      const cols = product(base) / base[0]!;
      if (product(up) !== rows * rank || up[0] !== rows || product(down) !== rank * cols) {
        throw new CheckpointError(
          'bad-tensor',
          `LoRA "${lora.name}": ${m.key} has down [${down.join(', ')}] and up [${up.join(', ')}], which do not fit ${target.tensor} [${base.join(', ')}]; is it for another model?`,
        );
      }
      const planned: PlannedModule = { lora, target, down: m.down, up: m.up, rank, rows, cols, ...(m.alpha === undefined ? {} : { alpha: m.alpha }) };
      byTensor.set(target.tensor, [...(byTensor.get(target.tensor) ?? []), planned]);
      applied++;
    }
    if (applied === 0) throw new CheckpointError('unsupported-family', `LoRA "${lora.name}" changes nothing in this model: none of its ${modules.length} modules has a matching layer.`);
    report.push({ name: lora.name, applied, skipped });
  }
  return { byTensor, report };
}

/** Adds scale × up · down to rows [rowOffset, rowOffset + rows) of `w` (row-major [*, cols]). */
export function addLowRank(w: Float32Array, up: Float32Array, down: Float32Array, rows: number, rank: number, cols: number, rowOffset: number, scale: number): void {
  const row = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    row.fill(0);
    for (let k = 0; k < rank; k++) {
      const u = up[r * rank + k]!;
      if (u === 0) continue;
      const d = k * cols;
      for (let c = 0; c < cols; c++) row[c]! += u * down[d + c]!;
    }
    const o = (rowOffset + r) * cols;
    for (let c = 0; c < cols; c++) w[o + c] = w[o + c]! + row[c]! * scale;
  }
}

/** The checkpoint with the planned LoRAs merged into the tensors they change (read on demand, one tensor at a time). */
export function mergedWeights(checkpoint: TensorReader, plan: LoraPlan): TensorReader {
  return {
    header: checkpoint.header,
    async readFloat32(name: string): Promise<Float32Array> {
      const w = await checkpoint.readFloat32(name);
      for (const m of plan.byTensor.get(name) ?? []) {
        const weight = m.target.part === 'unet' ? m.lora.unetWeight : m.lora.textEncoderWeight;
        if (weight === 0) continue;
        const alpha = m.alpha === undefined ? m.rank : (await m.lora.file.readFloat32(m.alpha))[0]!;
        const [up, down] = await Promise.all([m.lora.file.readFloat32(m.up), m.lora.file.readFloat32(m.down)]);
        addLowRank(w, up, down, m.rows, m.rank, m.cols, m.target.rowOffset, weight * (alpha / m.rank));
      }
      return w;
    },
  };
}
