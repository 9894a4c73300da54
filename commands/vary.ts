// V buttons: a new grid of variations around one picture. The picture's seed becomes the base
// seed and a fresh variation seed is blended in (AUTOMATIC1111's "Variation seed"); the engine
// keeps the base seed for every picture and uses variation seed + i.
import type { JobSpec } from '../src/jobs/types.js';
import { refuse } from './format.js';
import { jobForAction, pictureOf, randomSeed, submitFor, submittedReply } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

export async function vary(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const action = req.action?.action === 'vary-strong' ? 'vary-strong' : 'vary';
  const found = await jobForAction(req, ctx, action);
  if (!found.ok) return found.reply;
  const job = found.value;
  if (job.kind === 'upscale' || job.spec.init) {
    return refuse('Variations are made from a drawn result, not from an upscale: use the V buttons on the original result.');
  }
  const picture = pictureOf(job, req.action?.index);
  if (!picture.ok) return picture.reply;
  const { image, index } = picture.value;

  const notes: string[] = [];
  if (job.spec.variation) {
    // The engine blends one variation seed into one base seed; a variation of a variation would
    // need two blends, so it varies around the same base picture instead.
    notes.push(`Picture ${index + 1} is itself a variation; these are new variations of its base picture (seed ${job.spec.seed}).`);
  }
  const strong = action === 'vary-strong';
  const { init: _init, ...base } = job.spec;
  const spec: JobSpec = {
    ...base,
    seed: job.spec.variation ? job.spec.seed : image.seed,
    count: job.spec.count,
    variation: {
      seed: randomSeed(),
      strength: strong ? ctx.config.defaults.varyStrong : ctx.config.defaults.varySubtle,
    },
  };
  const outcome = await submitFor(req, ctx, 'vary', spec, notes, job);
  return submittedReply(outcome, `${strong ? 'Strong' : 'Subtle'} variations of picture ${index + 1}. `, notes);
}
