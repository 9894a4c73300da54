// A model's suggested sampler, steps and guidance: Turbo-style distilled models (SD-Turbo, SDXL
// Turbo/Lightning/Hyper-SD) draw in 1–4 steps without guidance, which their weights cannot show —
// their name or scheduler config does; everything else gets A1111's usual settings.
import type { ModelFamily, ModelInfo } from './types.js';

export function isTurbo(name: string, scheduler: Record<string, unknown>): boolean {
  // Names as the distilled releases spell them (SD-Turbo, SDXL-Turbo, SDXL-Lightning, Hyper-SDXL),
  // not any "hyper…" (HyperRealism is an ordinary fine-tune).
  if (/turbo|lightning|hyper[-_ ]?sd/i.test(name)) return true;
  return scheduler['_class_name'] === 'EulerDiscreteScheduler' && scheduler['timestep_spacing'] === 'trailing';
}

export type ModelDefaults = Pick<ModelInfo, 'defaultSampler' | 'defaultSteps' | 'defaultGuidance'>;

export function defaultsFor(family: ModelFamily, turbo: boolean, name: string): ModelDefaults {
  // Turbo models are distilled for 1–4 steps without guidance (Lightning/Hyper checkpoints for 4
  // or more); the rest take A1111's usual settings.
  if (family === 'sd-turbo' || (family === 'sdxl' && turbo)) {
    return { defaultSampler: 'Turbo', defaultSteps: /lightning|hyper/i.test(name) ? 4 : 1, defaultGuidance: 0 };
  }
  return { defaultSampler: 'DPM++ 2M Karras', defaultSteps: 20, defaultGuidance: 7 };
}

/** A model's defaults from its family and name alone (checkpoint files, which have no scheduler config). */
export function defaultsForName(family: ModelFamily, name: string): ModelDefaults {
  return defaultsFor(family, isTurbo(name, {}), name);
}

