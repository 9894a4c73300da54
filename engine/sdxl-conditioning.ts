// SDXL's share of the conditioning (engine/conditioning.ts does the prompt language and chunks):
// each chunk goes through both encoders (hidden states = penultimate layer of CLIP ViT-L ‖
// penultimate layer of OpenCLIP bigG), encoder 2 gives the pooled text, an empty negative prompt
// is zeros — hidden and pooled alike — when the model says force_zeros_for_empty_prompt (diffusers'
// SDXL default), and the UNet gets the size/crop ids (original size, crop top-left, target size).
import type { PromptConditioning, PromptEncoder } from './conditioning.js';
import type { SdxlText } from './model.js';

/**
 * Both SDXL encoders as one PromptEncoder. The chunks come from tokenizer 1 (padding with the end
 * token); encoder 2's tokenizer pads with "!" (id 0) after the first end token, and its pooled
 * output is read at that end token, so its rows are re-padded here.
 */
export function sdxlPromptEncoder(sdxl: SdxlText, eosId: number): PromptEncoder {
  const pad2 = sdxl.tokenizer2.padId;
  const repad = (row: Int32Array): Int32Array => {
    const eos = row.indexOf(eosId, 1);
    if (eos < 0 || pad2 === eosId) return row;
    const out = row.slice();
    out.fill(pad2, eos + 1);
    return out;
  };
  return {
    parts: [
      { slot: 'clip_l', width: sdxl.widths[0] },
      { slot: 'clip_g', width: sdxl.widths[1] },
    ],
    acceptsEmbeddings: sdxl.acceptsEmbeddings,
    encode: (ids, overrides) => sdxl.encode(ids, ids.map(repad), overrides ? [overrides[0], overrides[1]] : undefined),
  };
}

/** diffusers' force_zeros_for_empty_prompt: under guidance, an empty negative conditions on zeros (in place). */
export function zeroEmptyNegative(c: PromptConditioning, negativePrompt: string, guidance: boolean, sdxl: SdxlText): void {
  if (!guidance || !sdxl.forceZerosForEmptyPrompt || negativePrompt.trim() !== '') return;
  c.hidden.fill(0, 0, c.hidden.length / 2);
  c.pooled?.fill(0, 0, c.pooled.length / 2);
}

/**
 * SDXL's add_time_ids for `rows` UNet rows: (original height, width, crop top, left, target
 * height, width). The engine draws whole pictures at the asked size, so original = target and
 * the crop is (0, 0), as diffusers does by default.
 */
export function sdxlTimeIds(width: number, height: number, rows: number): Float32Array {
  const out = new Float32Array(rows * 6);
  for (let r = 0; r < rows; r++) out.set([height, width, 0, 0, height, width], r * 6);
  return out;
}
