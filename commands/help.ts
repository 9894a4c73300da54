// /help: how to use the bot with this club's actual models, samplers and limits.
import { modelSummary } from '../engine/checkpoint-models.js';
import { SAMPLERS } from '../engine/types.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

export async function help(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { limits, defaults } = ctx.config;
  const models = ctx.models();
  const defaultModel = ctx.config.models.default || models[0]?.name;
  const modelLines = models.length
    ? models.flatMap((m) => {
        const marks = [m.name === defaultModel ? 'default' : '', modelSummary(m), m.hasVaeEncoder ? '' : 'no upscale'];
        const addons = [m.loras?.length ? `LoRAs: ${m.loras.join(', ')}` : '', m.embeddings?.length ? `embeddings: ${m.embeddings.join(', ')}` : ''].filter(Boolean);
        return [`• ${m.name} (${marks.filter(Boolean).join(', ')})`, ...(addons.length ? [`  ${addons.join(' · ')}`] : [])];
      })
    : ['• none installed yet: ask an admin'];
  const notice = ctx.modelNotice?.();
  if (notice) modelLines.push(`(${notice})`);
  const start =
    req.requester.platform === 'telegram'
      ? 'Write a prompt to me in a private chat, or /imagine a fox in the snow in a group.'
      : 'Type /imagine and a prompt, e.g. /imagine a fox in the snow --ar 3:2';
  const text = [
    'How to draw',
    start,
    '',
    'Flags after the prompt',
    '--ar 3:2 (aspect; 1:1, 3:2, 2:3, 16:9 …)  --no blurry, text (negative prompt)  --seed 42',
    `--steps 30 (max ${limits.maxSteps})  --cfg 6 (max ${limits.maxGuidance})  --sampler "dpm++ 2m karras"`,
    `--n 2 (pictures, max ${limits.maxImagesPerJob})  --model NAME  --size 512x768  --lora NAME:0.8 (again for more)`,
    'In the prompt: (word:1.3) and (word) weigh more, [word] less; <lora:NAME:0.8>; an embedding by its name; BREAK starts a new chunk.',
    'Pasting AUTOMATIC1111 parameters (from PNG Info) redraws that picture.',
    '',
    `Samplers: ${SAMPLERS.join(', ')}`,
    'Models:',
    ...modelLines,
    `Limits: ${limits.maxPixels} pixels and ${limits.maxSide} px a side per picture; prompts up to ${limits.maxPromptLength} characters.`,
    '',
    'Buttons on a result',
    'U1–U4: that picture alone at full size, plus a 2× upscale',
    `V1–V4: variations of that picture (strength ${defaults.varySubtle})`,
    '🔁 the same prompt with a new seed (reacting with 🔁 works too) · ℹ️ parameters and a command to redraw · 🗑 delete',
    '',
    'Other commands',
    '/settings your defaults (e.g. "steps 30", "aspect 3:2", "reset") · /queue who is waiting · /cancel your latest job',
  ].join('\n');
  return { ok: true, visibility: 'private', text };
}
