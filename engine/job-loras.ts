// The LoRAs a job asks for: `<lora:name:te:unet>` tags in its prompt plus `request.loras` (the
// engine's own callers, e.g. a `--lora` flag turned into a list). Read here, before the model is
// loaded, so the CLI, the bot and the web studio all get the same rules and the same one-line
// refusals. The tags stay in the prompt the member typed (the info text shows them, so pasting it
// back draws the same picture); the text encoder never sees them (parsePrompt removes them).
import { extractExtraNetworks } from './prompt/extra-networks.js';
import { EngineError, type GenerateRequest, type LoraRequest } from './types.js';

/** A weight beyond this is a typo (A1111 users go from about −2 to 2); it would only draw noise. */
export const MAX_LORA_WEIGHT = 10;

export interface JobLoras {
  /** The request with `loras` holding every LoRA of the job (absent when there are none). */
  request: GenerateRequest;
  /** The prompt for the info text: as typed, plus a tag for each LoRA that came from `request.loras`. */
  infoPrompt: string;
}

/** One LoRA as a prompt tag: `<lora:name:w>`, or `<lora:name:te:unet>` when the two weights differ. */
export function loraTag(lora: LoraRequest): string {
  const weights = lora.unetWeight === lora.textEncoderWeight ? `${lora.textEncoderWeight}` : `${lora.textEncoderWeight}:${lora.unetWeight}`;
  return `<lora:${lora.name}:${weights}>`;
}

export function jobLoras(request: GenerateRequest): JobLoras {
  const fromPrompt = extractExtraNetworks(request.prompt);
  const unsupported = fromPrompt.unsupported[0];
  if (unsupported !== undefined) {
    throw new EngineError('bad_request', `${unsupported} is not supported: only LoRAs can be added to a prompt, as <lora:name:weight>`);
  }
  const invalid = fromPrompt.invalid[0];
  if (invalid !== undefined) throw new EngineError('bad_request', `${invalid} cannot be read: write <lora:name:weight>, e.g. <lora:name:0.8>`);
  const inNegative = extractExtraNetworks(request.negativePrompt);
  const stray = [...inNegative.loras.map(loraTag), ...inNegative.unsupported, ...inNegative.invalid][0];
  if (stray !== undefined) {
    throw new EngineError('bad_request', `${stray} is in the negative prompt; a LoRA changes the whole model, so put its tag in the prompt`);
  }

  const extra = request.loras ?? [];
  const all = [...fromPrompt.loras, ...extra];
  const seen = new Set<string>();
  for (const lora of all) {
    if (typeof lora.name !== 'string' || lora.name.trim() === '') throw new EngineError('bad_request', 'a LoRA was asked for without a name');
    const key = lora.name.toLowerCase();
    if (seen.has(key)) throw new EngineError('bad_request', `LoRA "${lora.name}" is asked for twice; name it once with the weight you want`);
    seen.add(key);
    for (const w of [lora.textEncoderWeight, lora.unetWeight]) {
      if (typeof w !== 'number' || !Number.isFinite(w) || Math.abs(w) > MAX_LORA_WEIGHT) {
        throw new EngineError('bad_request', `LoRA "${lora.name}" weight ${String(w)} is not allowed: use a number from -${MAX_LORA_WEIGHT} to ${MAX_LORA_WEIGHT}`);
      }
    }
  }
  const rest: GenerateRequest = { ...request };
  delete rest.loras;
  return {
    request: all.length > 0 ? { ...rest, loras: all } : rest,
    infoPrompt: extra.length > 0 ? `${request.prompt} ${extra.map(loraTag).join(' ')}`.trim() : request.prompt,
  };
}
