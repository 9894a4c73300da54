// `<kind:args>` tags, A1111's extra-network syntax: every tag is removed from the prompt text
// (A1111 removes them all, known or not); `<lora:name[:te weight[:unet weight]]>` with named
// `te=`/`unet=` also accepted. Weights default to 1 and the UNet weight to the text-encoder one.

import type { LoraRequest } from '../types.js';

export type { LoraRequest };

export interface ExtraNetworks {
  /** The prompt with every tag removed. */
  text: string;
  loras: LoraRequest[];
  /** Tags of other kinds (hypernet, lyco, …), as typed, so the caller can refuse them by name. */
  unsupported: string[];
  /** Tags that look like LoRAs but could not be read (e.g. `<lora:x:heavy>`), as typed. */
  invalid: string[];
}

const TAG = /<(\w+):([^>]+)>/g;

/** A tag's weight: empty → `fallback`; not a finite number → undefined. */
export function weightOf(value: string | undefined, fallback: number): number | undefined {
  if (value === undefined || value.trim() === '') return fallback;
  const n = Number(value.trim());
  return Number.isFinite(n) ? n : undefined;
}

export function extractExtraNetworks(prompt: string): ExtraNetworks {
  const loras: LoraRequest[] = [];
  const unsupported: string[] = [];
  const invalid: string[] = [];
  const text = prompt.replace(TAG, (tag: string, kind: string, args: string) => {
    if (kind.toLowerCase() !== 'lora') {
      unsupported.push(tag);
      return '';
    }
    const positional: string[] = [];
    const named = new Map<string, string>();
    for (const item of args.split(':')) {
      const eq = /^\s*(\w+)\s*=(.*)$/.exec(item);
      if (eq) named.set(eq[1]!.toLowerCase(), eq[2]!);
      else positional.push(item);
    }
    const name = positional[0]?.trim() ?? '';
    const te = weightOf(named.get('te') ?? positional[1], 1);
    const unet = te === undefined ? undefined : weightOf(named.get('unet') ?? positional[2], te);
    if (name === '' || te === undefined || unet === undefined) invalid.push(tag);
    else loras.push({ name, textEncoderWeight: te, unetWeight: unet });
    return '';
  });
  return { text, loras, unsupported, invalid };
}
