// LoRA merging: module names of every layout map to the checkpoint tensors they change, the merged
// weights equal PyTorch's W + weight·(alpha/rank)·up·down (scripts/reference/lora.py) on the
// synthetic weights, and LoRAs that do not fit are refused by name.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckpointError } from '../engine/checkpoint/errors.js';
import { loraTargetTable, loraModules } from '../engine/checkpoint/lora-names.js';
import { assertLoraFits, loraFamily, mergedWeights, planLoras, type LoraInput } from '../engine/checkpoint/lora.js';
import { openWeightsFile } from '../engine/checkpoint/pickle-guard.js';
import type { SafetensorsFile } from '../engine/checkpoint/safetensors.js';
import { bytesOf, writeSafetensors } from '../engine/checkpoint/safetensors-write.js';
import { syntheticTensor } from '../engine/checkpoint/synthetic-weights.js';
import * as ort from 'onnxruntime-node';
import { expectMatchesReference, type ReferenceSummary } from './fixtures/reference/harness.js';
import referenceJson from './fixtures/reference/lora.json' with { type: 'json' };
import layout from './fixtures/reference/sd15_layout.json' with { type: 'json' };

interface Case {
  base: Record<string, number[]>;
  loras: { name: string; seed: number; te_weight: number; unet_weight: number; tensors: Record<string, number[]>; alphas: Record<string, number> }[];
  merged: Record<string, ReferenceSummary>;
}
const reference = referenceJson as unknown as Record<'sd1' | 'sd2_fused', Case>;

let dir: string;
const open: SafetensorsFile[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'lora-'));
});
afterAll(async () => {
  for (const f of open) await f.close();
  await rm(dir, { recursive: true, force: true });
});

async function writeCase(name: string, c: Case): Promise<{ base: SafetensorsFile; loras: LoraInput[] }> {
  const basePath = path.join(dir, `${name}-base.safetensors`);
  await writeSafetensors(
    basePath,
    Object.entries(c.base).map(([n, shape]) => ({ name: n, dtype: 'F32' as const, shape, data: () => bytesOf(syntheticTensor(n, shape, 0)) })),
  );
  const base = await openWeightsFile(basePath);
  open.push(base);
  const loras: LoraInput[] = [];
  for (const l of c.loras) {
    const file = path.join(dir, `${l.name}.safetensors`);
    await writeSafetensors(file, [
      ...Object.entries(l.tensors).map(([n, shape]) => ({ name: n, dtype: 'F32' as const, shape, data: () => bytesOf(syntheticTensor(n, shape, l.seed)) })),
      ...Object.entries(l.alphas).map(([n, v]) => ({ name: n, dtype: 'F32' as const, shape: [], data: () => bytesOf(new Float32Array([v])) })),
    ]);
    const reader = await openWeightsFile(file);
    open.push(reader);
    loras.push({ name: l.name, file: reader, textEncoderWeight: l.te_weight, unetWeight: l.unet_weight });
  }
  return { base, loras };
}

describe('LoRA merge against the PyTorch reference', () => {
  for (const caseName of ['sd1', 'sd2_fused'] as const) {
    it(`${caseName}: every merged tensor within 1e-5 of W + Σ weight·(alpha/rank)·up·down`, async () => {
      const c = reference[caseName];
      const { base, loras } = await writeCase(caseName, c);
      const plan = planLoras(base, loras);
      expect(plan.report.every((r) => r.skipped.length === 0)).toBe(true);
      const merged = mergedWeights(base, plan);
      for (const [name, expected] of Object.entries(c.merged)) {
        const data = await merged.readFloat32(name);
        expectMatchesReference(new ort.Tensor('float32', data, expected.shape), expected, 1e-5);
        // The merge changed the tensor (a wrong target would leave it as it was).
        const before = await base.readFloat32(name);
        expect(data.some((v, i) => v !== before[i])).toBe(true);
      }
    });
  }

  it('several LoRAs on one tensor add up; a LoRA at weight 0 changes nothing; the base file is untouched', async () => {
    const { base, loras } = await writeCase('sd1-zero', reference.sd1);
    const q = Object.keys(reference.sd1.base)[0]!;
    const off = loras.map((l) => ({ ...l, textEncoderWeight: 0, unetWeight: 0 }));
    expect(Array.from(await mergedWeights(base, planLoras(base, off)).readFloat32(q))).toEqual(Array.from(await base.readFloat32(q)));
    const only = mergedWeights(base, planLoras(base, [loras[0]!]));
    const both = mergedWeights(base, planLoras(base, loras));
    const [w, a, ab] = await Promise.all([base.readFloat32(q), only.readFloat32(q), both.readFloat32(q)]);
    const peftOnly = mergedWeights(base, planLoras(base, [loras[1]!]));
    const b = await peftOnly.readFloat32(q);
    ab.forEach((v, i) => expect(v).toBeCloseTo(a[i]! + b[i]! - w[i]!, 5));
  });
});

describe('LoRA module names → checkpoint tensors (full SD 1.5 layout)', () => {
  const tensors = layout.tensors as Record<string, number[]>;
  const table = loraTargetTable(Object.keys(tensors), (n) => tensors[n]);
  const U = 'model.diffusion_model.';
  it.each([
    ['lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2', `${U}output_blocks.11.1.transformer_blocks.0.ff.net.2.weight`],
    ['lora_unet_up_blocks_3_attentions_0_transformer_blocks_0_attn2_to_out_0', `${U}output_blocks.9.1.transformer_blocks.0.attn2.to_out.0.weight`],
    ['lora_unet_mid_block_attentions_0_proj_out', `${U}middle_block.1.proj_out.weight`],
    ['lora_unet_mid_block_resnets_1_conv2', `${U}middle_block.2.out_layers.3.weight`],
    ['lora_unet_down_blocks_2_downsamplers_0_conv', `${U}input_blocks.9.0.op.weight`],
    ['lora_unet_down_blocks_1_resnets_0_time_emb_proj', `${U}input_blocks.4.0.emb_layers.1.weight`],
    ['lora_unet_down_blocks_3_resnets_1_conv1', `${U}input_blocks.11.0.in_layers.2.weight`],
    ['lora_unet_up_blocks_0_upsamplers_0_conv', `${U}output_blocks.2.1.conv.weight`],
    ['lora_unet_up_blocks_1_upsamplers_0_conv', `${U}output_blocks.5.2.conv.weight`],
    ['lora_unet_up_blocks_2_resnets_2_conv_shortcut', `${U}output_blocks.8.0.skip_connection.weight`],
    ['lora_te_text_model_encoder_layers_11_mlp_fc2', 'cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight'],
    ['unet.down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_k', `${U}input_blocks.2.1.transformer_blocks.0.attn1.to_k.weight`],
    ['text_encoder.text_model.encoder.layers.3.self_attn.v_proj', 'cond_stage_model.transformer.text_model.encoder.layers.3.self_attn.v_proj.weight'],
    ['lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k', `${U}input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight`],
  ])('%s → %s', (key, tensor) => {
    expect(table.get(key)?.tensor).toBe(tensor);
    expect(tensors[tensor]).toBeDefined();
  });

  it("covers kohya's default SD 1.5 targets: 192 UNet attention modules and 72 text-encoder modules", () => {
    const unet = [...table.keys()].filter((k) => /^lora_unet_(down_blocks|mid_block|up_blocks)_.*attentions_\d+_(proj_in|proj_out|transformer_blocks_0_(attn[12]_(to_q|to_k|to_v|to_out_0)|ff_net_0_proj|ff_net_2))$/.test(k));
    expect(unet).toHaveLength(192);
    const te = [...table.keys()].filter((k) => /^lora_te_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])$/.test(k));
    expect(te).toHaveLength(72);
  });

  it('groups down/up/alpha of every layout', () => {
    const { modules, unpaired } = loraModules([
      'lora_unet_a.lora_down.weight',
      'lora_unet_a.lora_up.weight',
      'lora_unet_a.alpha',
      'unet.b.lora_A.weight',
      'unet.b.lora_B.weight',
      'unet.c.processor.to_q_lora.down.weight',
      'unet.c.processor.to_q_lora.up.weight',
      'lora_te_d.lora_down.weight',
    ]);
    expect(modules).toEqual([
      { key: 'lora_unet_a', down: 'lora_unet_a.lora_down.weight', up: 'lora_unet_a.lora_up.weight', alpha: 'lora_unet_a.alpha' },
      { key: 'unet.b', down: 'unet.b.lora_A.weight', up: 'unet.b.lora_B.weight' },
      { key: 'unet.c.to_q', down: 'unet.c.processor.to_q_lora.down.weight', up: 'unet.c.processor.to_q_lora.up.weight' },
    ]);
    expect(unpaired).toEqual(['lora_te_d']);
  });
});

describe('refusals', () => {
  const shapes = (o: Record<string, number[]>) => new Map(Object.entries(o).map(([k, shape]) => [k, { shape }]));
  it('an SDXL LoRA on an SD 1.x model is refused by name', () => {
    const sdxl = shapes({
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight': [16, 2048],
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight': [640, 16],
    });
    const family = loraFamily('pixel-xl', sdxl);
    expect(family).toBe('sdxl');
    expect(() => assertLoraFits('pixel-xl', family, 'sd1')).toThrow('LoRA "pixel-xl" is for SDXL models; this model is SD 1.x');
  });
  it('a LyCORIS file and a checkpoint given as a LoRA are refused by name', () => {
    expect(() => loraFamily('loha', shapes({ 'lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a': [320, 4] }))).toThrow(/LoRA "loha" cannot be used: .*LyCORIS/);
    expect(() => loraFamily('ckpt', shapes({ 'model.diffusion_model.input_blocks.0.0.weight': [320, 4, 3, 3] }))).toThrow(CheckpointError);
  });
  it('a LoRA with no matching layer, or with shapes that do not fit, is refused by name', async () => {
    const { base } = await writeCase('sd1-refuse', reference.sd1);
    const fake = (tensors: Record<string, number[]>): LoraInput => ({
      name: 'odd',
      file: { header: { tensors: shapes(tensors) }, readFloat32: () => Promise.reject(new Error('not read')) },
      textEncoderWeight: 1,
      unetWeight: 1,
    });
    expect(() => planLoras(base, [fake({ 'lora_unet_nowhere.lora_down.weight': [4, 8], 'lora_unet_nowhere.lora_up.weight': [8, 4] })])).toThrow('LoRA "odd" changes nothing in this model');
    expect(() =>
      planLoras(base, [fake({ 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight': [4, 64, 1, 1], 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight': [32, 4, 1, 1] })]),
    ).toThrow(/LoRA "odd": .* do not fit .*proj_in/);
  });
});
