// One list of commands and options for every platform: Discord's slash-command JSON and
// Telegram's setMyCommands menu are both drawn from it.
import { SAMPLERS } from '../engine/types.js';
import type { Config } from '../src/config/schema.js';
import type { CommandName } from './types.js';

export interface OptionDef {
  name: string;
  description: string;
  type: 'string' | 'integer' | 'number' | 'boolean';
  required?: boolean;
  choices?: { name: string; value: string }[];
  min?: number;
  max?: number;
  maxLength?: number;
  /** Suggestions as the member types (Discord autocomplete): `suggest(option, typed)` answers. */
  autocomplete?: boolean;
}

export interface CommandDef {
  name: CommandName;
  description: string;
  options: OptionDef[];
}

/** The commands members type (buttons cover reroll, vary, upscale, info and delete). */
export function commandDefinitions(config: Config): CommandDef[] {
  const { limits } = config;
  return [
    {
      name: 'imagine',
      description: 'Draw pictures from a prompt (inline --ar, --seed, --no, --steps … work too)',
      options: [
        { name: 'prompt', description: 'What to draw', type: 'string', required: true, maxLength: limits.maxPromptLength },
        { name: 'negative', description: 'What to keep out of the picture', type: 'string', maxLength: limits.maxPromptLength },
        { name: 'aspect', description: 'Aspect ratio such as 1:1, 3:2, 2:3, 16:9', type: 'string', maxLength: 5 },
        { name: 'seed', description: 'Seed (same seed, same picture)', type: 'integer', min: 0, max: 4294967295 },
        { name: 'steps', description: 'Sampling steps', type: 'integer', min: 1, max: limits.maxSteps },
        { name: 'guidance', description: 'CFG scale: how closely to follow the prompt', type: 'number', min: 0, max: limits.maxGuidance },
        {
          name: 'sampler',
          description: 'Sampler',
          type: 'string',
          choices: SAMPLERS.map((s) => ({ name: s, value: s })),
        },
        { name: 'images', description: 'How many pictures', type: 'integer', min: 1, max: limits.maxImagesPerJob },
        { name: 'model', description: 'Model name (see /help)', type: 'string', maxLength: 100, autocomplete: true },
      ],
    },
    {
      name: 'settings',
      description: 'Show or change your defaults, e.g. "steps 30", "aspect 3:2", "reset"',
      options: [{ name: 'change', description: 'key value, or "reset"', type: 'string', maxLength: 500 }],
    },
    { name: 'queue', description: 'Show the queue and your place in it', options: [] },
    {
      name: 'cancel',
      description: 'Cancel your queued or running job (the latest, or a job id)',
      options: [{ name: 'job', description: 'Job id', type: 'string', maxLength: 16 }],
    },
    { name: 'help', description: 'How to use the bot, flags, samplers and models', options: [] },
    { name: 'web', description: 'A private link that signs you in to the web studio', options: [] },
  ];
}
