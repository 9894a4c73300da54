// npx tsx bench/lora-switch.ts [--size sd15|tiny] [--rank 16] [--dir DIR]
//
// What switching LoRAs costs with merged variants: prepares a random-weight checkpoint (SD 1.5
// layout in fp16, or the tiny test model), writes two kohya LoRAs covering kohya's default targets
// (192 UNet attention modules, 72 text-encoder modules; rank 16), then times
//   plain prepare → variant A (first use) → variant B (first use) → back to A (cache hit) → A+B.
// Prints one JSON line per step with seconds and this process's peak RSS so far.
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { du } from './dir-size.js';
import { loraTargetTable } from '../engine/checkpoint/lora-names.js';
import { prepareLoraVariant, type LoraChoice } from '../engine/checkpoint/lora-variants.js';
import { writeModelFolder } from '../engine/checkpoint/model-folder.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import { prepareCheckpoint } from '../engine/checkpoint/prepare.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import { float32ToFloat16Bits } from '../engine/fp16.js';
import layout from '../test/fixtures/reference/sd15_layout.json' with { type: 'json' };
import { tinyE2EReference as tiny, tinyFolderPlan } from '../test/fixtures/reference/tiny-generation.js';

const { values } = parseArgs({ options: { size: { type: 'string', default: 'sd15' }, rank: { type: 'string', default: '16' }, dir: { type: 'string' } } });
const size = values.size === 'tiny' ? 'tiny' : 'sd15';
const rank = Number(values.rank);
const KOHYA_DEFAULT = /^lora_(unet_(down_blocks|mid_block|up_blocks)_.*attentions_\d+_(proj_in|proj_out|transformer_blocks_\d+_(attn[12]_(to_q|to_k|to_v|to_out_0)|ff_net_0_proj|ff_net_2))|te_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12]))$/;

const peakRssMb = (): number => Math.round(process.resourceUsage().maxRSS / 1024);
const MB = 1024 * 1024;


async function timed<T>(step: string, f: () => Promise<T>, extra: (r: T) => Record<string, unknown> = () => ({})): Promise<T> {
  const t0 = performance.now();
  const r = await f();
  console.log(JSON.stringify({ step, seconds: Math.round((performance.now() - t0) / 100) / 10, peakRssMb: peakRssMb(), ...extra(r) }));
  return r;
}

async function main(): Promise<void> {
  const dir = values.dir ?? (await mkdtemp(path.join(tmpdir(), 'lora-bench-')));
  const cacheDir = path.join(dir, 'cache');
  const ckpt = path.join(dir, `${size}.safetensors`);
  const tensors = (size === 'sd15' ? layout.tensors : tiny.tensors) as Record<string, number[]>;
  try {
    await timed('write checkpoint', () =>
      writeSafetensors(
        ckpt,
        Object.entries(tensors).map(([name, shape]) => ({
          name,
          dtype: size === 'sd15' ? ('F16' as const) : ('F32' as const),
          shape,
          data: () => {
            const f = syntheticTensor(name, shape);
            if (size !== 'sd15') return bytesOf(f);
            const bits = float32ToFloat16Bits(f);
            return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
          },
        })),
      ),
    );
    const table = loraTargetTable(Object.keys(tensors), (n) => tensors[n]);
    const modules = [...table.entries()].filter(([k]) => KOHYA_DEFAULT.test(k));
    const writeLora = (file: string, seed: number) =>
      writeSafetensors(
        file,
        modules.flatMap(([key, target]) => {
          const shape = tensors[target.tensor]!;
          const cols = shape.slice(1).reduce((a, b) => a * b, 1);
          const down = shape.length === 4 ? [rank, shape[1]!, shape[2]!, shape[3]!] : [rank, cols];
          const up = shape.length === 4 ? [shape[0]!, rank, 1, 1] : [shape[0]!, rank];
          return [
            { name: `${key}.lora_down.weight`, dtype: 'F32' as const, shape: down, data: () => bytesOf(syntheticTensor(`${key}.d`, down, seed)) },
            { name: `${key}.lora_up.weight`, dtype: 'F32' as const, shape: up, data: () => bytesOf(syntheticTensor(`${key}.u`, up, seed)) },
            { name: `${key}.alpha`, dtype: 'F32' as const, shape: [], data: () => bytesOf(Float32Array.of(rank / 2)) },
          ];
        }),
      );
    const loraA = path.join(dir, 'a.safetensors');
    const loraB = path.join(dir, 'b.safetensors');
    await writeLora(loraA, 1);
    await writeLora(loraB, 2);
    console.log(JSON.stringify({ step: 'loras', modules: modules.length, rank, fileMb: Math.round((await stat(loraA)).size / MB) }));

    let checkpoint: Parameters<typeof prepareLoraVariant>[0];
    if (size === 'sd15') {
      const p = await timed('plain prepare (first use)', () => prepareCheckpoint(ckpt, { cacheDir }), (r) => ({ reused: r.reused }));
      if (p.info.family !== 'sd1' && p.info.family !== 'sd2') throw new Error('not SD 1.x/2.x');
      checkpoint = { path: ckpt, sha256: p.sha256, info: { family: p.info.family, prediction: p.info.prediction }, plainDir: p.dir };
    } else {
      const plan = tinyFolderPlan;
      const plainDir = path.join(dir, 'plain');
      await timed('plain prepare (first use)', async () => {
        const w = await openWeightsFile(ckpt);
        try {
          await writeModelFolder(w, plan, plainDir);
        } finally {
          await w.close();
        }
      });
      checkpoint = { path: ckpt, sha256: '00'.repeat(32), info: { family: 'sd1', prediction: 'epsilon' }, plainDir, plan };
    }
    const opts = { cacheDir, maxVariantBytes: 20 * 1024 * MB, ...(size === 'tiny' ? { familyOf: () => 'sd1' as const } : {}) };
    const pick = (...files: string[]): LoraChoice[] => files.map((f) => ({ path: f, textEncoderWeight: 0.8, unetWeight: 0.8 }));
    const report = (r: Awaited<ReturnType<typeof prepareLoraVariant>>) => ({ reused: r.reused });
    const a = await timed('variant A (first use)', () => prepareLoraVariant(checkpoint, pick(loraA), opts), report);
    console.log(JSON.stringify({ step: 'variant size', newBytesMb: Math.round((await stat(path.join(a.dir, 'unet', 'model.onnx_data'))).size / MB) + Math.round((await stat(path.join(a.dir, 'text_encoder', 'model.onnx_data'))).size / MB), folderMb: Math.round((await du(a.dir)) / MB) }));
    await timed('variant B (first use)', () => prepareLoraVariant(checkpoint, pick(loraB), opts), report);
    await timed('back to A (cache hit)', () => prepareLoraVariant(checkpoint, pick(loraA), opts), report);
    await timed('A + B (first use)', () => prepareLoraVariant(checkpoint, pick(loraA, loraB), opts), report);
  } finally {
    if (values.dir === undefined) await rm(dir, { recursive: true, force: true });
  }
}

await main();
