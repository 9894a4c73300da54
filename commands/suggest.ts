// What a member is offered while typing an option (Discord's autocomplete): for `model`, the
// installed models whose names contain what was typed, each labelled with family, native size,
// dtype and source so the choice is informed ("club-model — SD 1.x, 512×512, fp16, checkpoint").
import { modelSummary } from '../engine/checkpoint-models.js';
import type { CommandContext } from './types.js';

export interface Suggestion {
  /** What the member sees. */
  label: string;
  /** What the option is set to. */
  value: string;
}

export function suggest(option: string, typed: string, ctx: CommandContext, max: number): Suggestion[] {
  if (option !== 'model') return [];
  const needle = typed.trim().toLowerCase();
  return ctx
    .models()
    .filter((m) => m.name.toLowerCase().includes(needle))
    .slice(0, max)
    .map((m) => ({ label: `${m.name} — ${modelSummary(m)}`, value: m.name }));
}
