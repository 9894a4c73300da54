// 🔁: the same request again with a new seed, for whoever pressed (their quota, their reply).
import type { JobSpec } from '../src/jobs/types.js';
import { jobForAction, randomSeed, submitFor, submittedReply } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

/**
 * A variation result rerolls its variation seed and keeps the base seed, so it stays
 * "variations of that picture"; everything else gets a new seed.
 */
export function rerolledSpec(spec: JobSpec, seed: number): JobSpec {
  return spec.variation ? { ...spec, variation: { ...spec.variation, seed } } : { ...spec, seed };
}

export async function reroll(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const found = await jobForAction(req, ctx, 'reroll');
  if (!found.ok) return found.reply;
  const job = found.value;
  const outcome = await submitFor(req, ctx, 'reroll', rerolledSpec(job.spec, randomSeed()), [], job);
  return submittedReply(outcome, 'Rerolling. ');
}
