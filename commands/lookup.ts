// Loading the job a button or reaction points at, with the member-facing answers for
// everything that can be wrong about it (gone, unfinished, wrong picture, not allowed).
import { randomInt } from 'node:crypto';
import type { Job, JobImage, JobKind, JobSpec, SubmitOutcome } from '../src/jobs/types.js';
import { formatEta, refuse } from './format.js';
import { mayAct, refusalText } from './permissions.js';
import type { ActionName, CommandContext, CommandReply, CommandRequest } from './types.js';

export const EXPIRED = 'That result has expired or was deleted.';

export type Lookup<T> = { ok: true; value: T } | { ok: false; reply: CommandReply };

/** The job id a request names: a button's action, else a `job` option (cancel). */
export function requestedJobId(req: CommandRequest): string | undefined {
  const fromOption = req.options?.job;
  const id = req.action?.jobId ?? (typeof fromOption === 'string' ? fromOption.trim() : undefined);
  return id ? id : undefined;
}

/** The job behind a button, checked against the permission for `action`. */
export async function jobForAction(req: CommandRequest, ctx: CommandContext, action: ActionName): Promise<Lookup<Job>> {
  const id = requestedJobId(req);
  if (!id) return { ok: false, reply: refuse('That button has lost its data; please use the buttons on a newer result.') };
  const job = await ctx.jobs.get(id);
  if (!job) return { ok: false, reply: refuse(EXPIRED) };
  if (!mayAct(ctx.config, action, job, req.requester, req.via)) return { ok: false, reply: refuse(refusalText(action, job)) };
  return { ok: true, value: job };
}

/** The picture a per-picture button points at (0-based index). */
export function pictureOf(job: Job, index: number | undefined): Lookup<{ image: JobImage; index: number }> {
  const images = job.result?.images ?? [];
  if (images.length === 0) {
    const why =
      job.status === 'failed'
        ? 'That job failed, so it has no pictures.'
        : job.status === 'cancelled'
          ? 'That job was cancelled, so it has no pictures.'
          : 'That job has no pictures yet; try again when it is done.';
    return { ok: false, reply: refuse(why) };
  }
  const i = index ?? 0;
  const image = images[i];
  if (!Number.isInteger(i) || !image) {
    return { ok: false, reply: refuse(`That result has ${images.length} picture${images.length > 1 ? 's' : ''}; there is no picture ${i + 1}.`) };
  }
  return { ok: true, value: { image, index: i } };
}

/** A fresh uint32 seed (reroll and variation seeds are not derived from anything). */
export function randomSeed(): number {
  return randomInt(0, 2 ** 32);
}

/** "Queued #2 · about 40 s" for a submitted job, or the service's refusal. */
export function submittedReply(outcome: SubmitOutcome, lead: string, notes: string[] = []): CommandReply {
  if (!outcome.ok) return refuse(outcome.reason);
  const place = outcome.position <= 0 ? 'next up' : `#${outcome.position}`;
  const text = [`${lead}Queued ${place} · ${formatEta(outcome.etaSeconds, outcome.approximate)}`, ...notes].join('\n');
  return {
    ok: true,
    visibility: 'public',
    text,
    queued: { job: outcome.job, position: outcome.position, etaSeconds: outcome.etaSeconds },
  };
}

/** Queue a job for the member who asked, answering where they asked; a platform key dedupes re-deliveries. */
export function submitFor(
  req: CommandRequest,
  ctx: CommandContext,
  kind: JobKind,
  spec: JobSpec,
  notes: string[],
  parent?: Job,
): Promise<SubmitOutcome> {
  return ctx.jobs.submit({
    kind,
    spec,
    requester: req.requester,
    target: req.target,
    notes,
    ...(parent ? { parentId: parent.id } : {}),
    ...(req.idempotencyKey ? { idempotencyKey: req.idempotencyKey } : {}),
  });
}
