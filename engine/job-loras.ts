// The LoRAs a job asks for: `<lora:name:te:unet>` tags in its prompt plus `request.loras` (the
// engine's own callers, e.g. a `--lora` flag turned into a list). Read here, before the model is
// loaded, so the CLI, the bot and the web studio all get the same rules and the same one-line
// refusals. The tags stay in the prompt the member typed (the info text shows them, so pasting it
// back draws the same picture); the text encoder never sees them (parsePrompt removes them).
import { extractExtraNetworks, weightOf } from './prompt/extra-networks.js';
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

/**
 * Every LoRA of a job: the prompt's tags, then `extra`. Refuses (EngineError 'bad_request', a line
 * a member can act on) other kinds of tags, unreadable weights, tags in the negative prompt, a
 * LoRA named twice and weights out of range. The commands parser calls it too, so a member hears
 * about a bad tag before the job is queued.
 */
export function collectLoras(prompt: string, negativePrompt: string, extra: readonly LoraRequest[] = []): LoraRequest[] {
  const fromPrompt = extractExtraNetworks(prompt);
  const unsupported = fromPrompt.unsupported[0];
  if (unsupported !== undefined) {
    throw new EngineError('bad_request', `${unsupported} is not supported: only LoRAs can be added to a prompt, as <lora:name:weight>`);
  }
  const invalid = fromPrompt.invalid[0];
  if (invalid !== undefined) throw new EngineError('bad_request', `${invalid} cannot be read: write <lora:name:weight>, e.g. <lora:name:0.8>`);
  const inNegative = extractExtraNetworks(negativePrompt);
  const stray = [...inNegative.loras.map(loraTag), ...inNegative.unsupported, ...inNegative.invalid][0];
  if (stray !== undefined) {
    throw new EngineError('bad_request', `${stray} is in the negative prompt; a LoRA changes the whole model, so put its tag in the prompt`);
  }
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
  return all;
}

/** The job's LoRAs joined into the request (see collectLoras for what is refused). */
export function jobLoras(request: GenerateRequest): JobLoras {
  const extra = request.loras ?? [];
  const all = collectLoras(request.prompt, request.negativePrompt, extra);
  const rest: GenerateRequest = { ...request };
  delete rest.loras;
  return {
    request: all.length > 0 ? { ...rest, loras: all } : rest,
    infoPrompt: extra.length > 0 ? `${request.prompt} ${extra.map(loraTag).join(' ')}`.trim() : request.prompt,
  };
}

/**
 * What a request loads, as one string: its model's name, or that name with its LoRA set when the
 * engine draws with a LoRA variant (a folder of its own). The engine reports its loaded models by
 * these keys (Engine.loadedModels) and a scheduler derives a waiting job's key with the same
 * function, so "loaded" means the very variant the job will draw with. A set in any order and its
 * names in any case give one key, as they give one variant folder (LoRA files are found by name in
 * any case; the variant is keyed by the sorted set). Keys are compared, never taken apart.
 */
export function loadKey(model: string, loras: readonly LoraRequest[] = []): string {
  if (loras.length === 0) return model;
  const tags = loras.map((l) => loraTag({ ...l, name: l.name.toLowerCase() })).sort();
  return `${model} ${tags.join(' ')}`;
}

/** The load key of a request whose prompt may carry `<lora:…>` tags; throws what jobLoras throws. */
export function requestLoadKey(request: Pick<GenerateRequest, 'model' | 'prompt' | 'negativePrompt' | 'loras'>): string {
  return loadKey(request.model, collectLoras(request.prompt, request.negativePrompt, request.loras ?? []));
}

const LORA_FLAG = /^([^\s:<>]+)(?::([^:]*))?(?::([^:]*))?$/;

/**
 * A `--lora` value: `name`, `name:weight` or `name:te:unet` (weights default to 1, the UNet's
 * to the text encoder's, as in the tag). Refuses, with an example, what it cannot read.
 */
export function parseLoraFlag(value: string): LoraRequest {
  const text = value.normalize('NFKC').trim();
  const m = LORA_FLAG.exec(text);
  const te = weightOf(m?.[2], 1);
  const unet = te === undefined ? undefined : weightOf(m?.[3], te);
  if (!m?.[1] || te === undefined || unet === undefined) {
    throw new EngineError('bad_request', `--lora ${JSON.stringify(text.slice(0, 60))} cannot be read: write --lora name:0.8 (or name:te:unet, e.g. name:1:0.6)`);
  }
  return { name: m[1], textEncoderWeight: te, unetWeight: unet };
}
