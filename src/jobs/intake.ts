/**
 * Intake: submit (caps, idempotency, durable acknowledgement) and cancel. A request is written
 * to the store before the member hears "queued"; a cancel is written before it is announced.
 */
import { jobLog, type JobsContext } from './context.js';
import { newJobId } from './ids.js';
import { clone, freezeParts, memberKeyOf, view } from './job-copies.js';
import { MESSAGES } from './messages.js';
import type { Runner } from './runner.js';
import type { CancelOutcome, Job, Requester, SubmitInput, SubmitOutcome } from './types.js';

export class Intake {
  /** Slots taken by submits that are still writing to the store (caps must count them). */
  private readonly reserved = new Map<string, number>();
  private reservedTotal = 0;
  private readonly inflightKeys = new Map<string, Promise<SubmitOutcome>>();

  constructor(
    private readonly ctx: JobsContext,
    private readonly runner: Runner,
  ) {}

  submit(input: SubmitInput): Promise<SubmitOutcome> {
    const key = input.idempotencyKey;
    if (!key) return this.submitOnce(input);
    // Two copies of one platform update arriving together must not both pass the store lookup.
    const pending = this.inflightKeys.get(key);
    if (pending) return pending.then((outcome) => (outcome.ok ? { ...outcome, duplicate: true } : outcome));
    const attempt = this.submitOnce(input).finally(() => this.inflightKeys.delete(key));
    this.inflightKeys.set(key, attempt);
    return attempt;
  }

  private async submitOnce(input: SubmitInput): Promise<SubmitOutcome> {
    const { schedule, store, config } = this.ctx;
    if (this.runner.isStopping) return { ok: false, reason: MESSAGES.restarting };
    if (!this.runner.isAvailable) return { ok: false, reason: MESSAGES.unavailable };
    if (input.idempotencyKey) {
      let existing: Job | undefined;
      try {
        existing = await store.jobs.byIdempotencyKey(input.idempotencyKey);
      } catch (err) {
        this.ctx.log.error({ err }, 'idempotency lookup failed');
        return { ok: false, reason: MESSAGES.notSaved };
      }
      if (existing) {
        const where = schedule.position(existing.id) ?? { position: 0, etaSeconds: 0 };
        return { ok: true, job: view(schedule.live.get(existing.id) ?? existing), ...where, duplicate: true };
      }
    }

    const member = memberKeyOf(input.requester);
    const { perMemberPending, globalPending } = config.queue;
    if (schedule.pendingOfMember(member) + (this.reserved.get(member) ?? 0) >= perMemberPending) {
      return { ok: false, reason: MESSAGES.memberCap(perMemberPending) };
    }
    if (schedule.pendingTotal() + this.reservedTotal >= globalPending) return { ok: false, reason: MESSAGES.globalCap(globalPending) };

    this.reserve(member, 1);
    let job: Job;
    try {
      const seq = await store.jobs.nextSeq();
      job = {
        id: await this.freshId(),
        seq,
        kind: input.kind,
        spec: clone(input.spec),
        requester: clone(input.requester),
        target: clone(input.target),
        tier: schedule.tierOf(input.requester),
        status: 'queued',
        createdAt: this.ctx.now(),
        attempts: 0,
        notes: [...input.notes],
      };
      if (input.parentId) job.parentId = input.parentId;
      if (input.idempotencyKey) job.idempotencyKey = input.idempotencyKey;
      freezeParts(job);
      // Saved before it is acknowledged: a member is never told "queued" about a job the store lacks.
      await store.jobs.put(job);
    } catch (err) {
      this.ctx.log.error({ err, member }, 'could not save a new job');
      return { ok: false, reason: MESSAGES.notSaved };
    } finally {
      this.reserve(member, -1);
    }
    if (this.runner.isStopping) {
      // stop() began while this job was being written: it stays queued in the store and resumes
      // after the restart, which is what the member is told.
      return { ok: true, job: view(job), position: schedule.fair.size + 1, etaSeconds: 0, duplicate: false };
    }

    schedule.enqueue(job);
    const where = schedule.placeOf(job, { position: 1, etaSeconds: 0 });
    jobLog(this.ctx.log, job).info({ position: where.position, etaSeconds: where.etaSeconds, kind: job.kind }, 'job queued');
    this.ctx.events.emit({ type: 'queued', job: view(job), ...where });
    schedule.scheduleMoves();
    // Added after the event: p-queue may start the task synchronously, and "queued" comes first.
    this.runner.kick();
    return { ok: true, job: view(job), ...where, duplicate: false };
  }

  private reserve(member: string, delta: number): void {
    const next = (this.reserved.get(member) ?? 0) + delta;
    if (next > 0) this.reserved.set(member, next);
    else this.reserved.delete(member);
    this.reservedTotal += delta;
  }

  private async freshId(): Promise<string> {
    for (;;) {
      const id = newJobId();
      if (!this.ctx.schedule.live.has(id) && !(await this.ctx.store.jobs.get(id))) return id;
    }
  }

  async cancel(jobId: string, by: Requester, asAdmin: boolean): Promise<CancelOutcome> {
    const { schedule, store, events } = this.ctx;
    const job = schedule.live.get(jobId) ?? (await store.jobs.get(jobId).catch(() => undefined));
    if (!job) return { ok: false, reason: MESSAGES.unknownJob(jobId) };
    const owner = job.requester.platform === by.platform && job.requester.userId === by.userId;
    if (!owner && !asAdmin) return { ok: false, reason: MESSAGES.notYours };
    const who = by.name || by.userId;

    const run = schedule.runningOf(jobId);
    if (run) {
      await this.runner.cancel(run, who);
      return { ok: true, job: view(run.job), wasRunning: true };
    }

    if (job.status === 'queued' && schedule.fair.has(jobId)) {
      const putBack = schedule.withdraw(jobId)!;
      const before = clone(job);
      this.markCancelled(job, who);
      try {
        await store.jobs.put(job);
      } catch (err) {
        jobLog(this.ctx.log, job).error({ err }, 'could not record a cancel; the job stays queued');
        Object.assign(job, before);
        delete job.cancelledBy;
        delete job.finishedAt;
        freezeParts(job);
        putBack();
        return { ok: false, reason: MESSAGES.cancelFailed };
      }
      jobLog(this.ctx.log, job).info({ by: who }, 'queued job cancelled');
      events.emit({ type: 'cancelled', job: view(job), by: who });
      schedule.scheduleMoves();
      return { ok: true, job: view(job), wasRunning: false };
    }
    if (job.status === 'queued') {
      // Stored as queued but not in this process's queue: submitted while the bot was stopping,
      // or before start(). Cancelling it in the store is enough; it will never be picked up.
      this.markCancelled(job, who);
      try {
        await store.jobs.put(job);
      } catch (err) {
        jobLog(this.ctx.log, job).error({ err }, 'could not record a cancel');
        return { ok: false, reason: MESSAGES.cancelFailed };
      }
      events.emit({ type: 'cancelled', job: view(job), by: who });
      return { ok: true, job: view(job), wasRunning: false };
    }
    if (job.status === 'running') return { ok: false, reason: MESSAGES.restarting };
    return { ok: false, reason: MESSAGES.alreadyOver(job) };
  }

  private markCancelled(job: Job, who: string): void {
    job.status = 'cancelled';
    job.cancelledBy = who;
    job.finishedAt = this.ctx.now();
  }
}
