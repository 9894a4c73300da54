// Cancel a queued or running job: a given one, or the member's most recent.
import type { Job, Requester } from '../src/jobs/types.js';
import { refuse, shorten } from './format.js';
import { EXPIRED, requestedJobId } from './lookup.js';
import { isAdmin, isOwner, mayAct, refusalText } from './permissions.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

/** The member's most recently submitted job that is still waiting or drawing. */
function latestOwnJob(ctx: CommandContext, requester: Requester): Job | undefined {
  const snap = ctx.jobs.snapshot();
  const candidates = [...(snap.running ? [snap.running.job] : []), ...(snap.alsoRunning ?? []).map((r) => r.job), ...snap.waiting.map((w) => w.job)];
  return candidates.filter((j) => isOwner(j, requester)).sort((a, b) => b.seq - a.seq)[0];
}

export async function cancel(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const id = requestedJobId(req);
  let job: Job | undefined;
  if (id) {
    job = await ctx.jobs.get(id);
    if (!job) return refuse(`No job ${shorten(id, 16)} was found. ${EXPIRED}`);
  } else {
    job = latestOwnJob(ctx, req.requester);
    if (!job) return refuse('You have nothing queued or drawing right now.');
  }
  if (!mayAct(ctx.config, 'cancel', job, req.requester, req.via)) return refuse(refusalText('cancel', job));
  if (job.status !== 'queued' && job.status !== 'running') {
    return refuse(`Job ${job.id} is already ${job.status === 'delivered' ? 'done' : job.status}; there is nothing to cancel.`);
  }
  // mayAct has decided; the service's admin flag is how a non-owner's cancel gets through.
  const asAdmin = isAdmin(ctx.config, req.requester) || !isOwner(job, req.requester);
  const outcome = await ctx.jobs.cancel(job.id, req.requester, asAdmin);
  if (!outcome.ok) return refuse(outcome.reason);
  const what = `“${shorten(outcome.job.spec.prompt, 80)}” (job ${outcome.job.id})`;
  return {
    ok: true,
    visibility: 'private',
    text: outcome.wasRunning ? `Stopped ${what} while it was drawing.` : `Cancelled ${what}.`,
  };
}
