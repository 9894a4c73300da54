/**
 * Scheduling: which job runs next, and what members are told about their place. Holds the fair
 * queue of waiting jobs, the jobs being drawn, and the ETAs built from both; announces queue
 * movements. No I/O: intake, the runner and recovery drive it.
 */
import type { Config } from '../config/schema.js';
import { cumulativeEtas, EtaModel, stepsToRun, type JobEstimate } from './eta.js';
import type { JobEvents } from './events.js';
import { FairQueue } from './fair-queue.js';
import { freezeParts, memberKeyOf, view } from './job-copies.js';
import { isLoadedFor, preferLoaded, PREFER_WITHIN } from './model-preference.js';
import type { Job, PictureRange, QueuePosition, QueueSnapshot, Requester } from './types.js';

/** Queue movements within this window are announced together (see scheduleMoves). */
const MOVES_COALESCE_MS = 20;
/** How far down the fair order a job may be chosen over the head (see takeNext). */
const CHOICE_WINDOW = 64;

export interface MemberProgress {
  step: number;
  total: number;
  pictures?: PictureRange;
}

export interface RunningJob {
  job: Job;
  controller: AbortController;
  /** Steps done and to do over the whole job, all batches counted (for the ETA). */
  step: number;
  total: number;
  /** The last progress as a member counts it (see JobEvent 'progress'). */
  shown?: MemberProgress;
  /** Resolves when the run loop is completely done with this job. */
  settled: Promise<void>;
  cancelledBy?: string;
  /** Aborted by stop(): goes back to the queue, not to "cancelled". */
  shutdown?: boolean;
  /** stop() gave up waiting and wrote the job back itself; the run loop must not write again. */
  abandoned?: boolean;
}

/** A QueuePosition's ETA fields: `approximate` only when it is. */
function etaOf(estimate: JobEstimate | undefined): Pick<QueuePosition, 'etaSeconds' | 'approximate'> {
  if (!estimate) return { etaSeconds: 0 };
  return { etaSeconds: Math.ceil(estimate.seconds - 1e-9), ...(estimate.approximate ? { approximate: true } : {}) };
}

export class Schedule {
  readonly fair = new FairQueue();
  /** Queued and running jobs (the store has the same; this is the working copy). */
  readonly live = new Map<string, Job>();
  /** Jobs being drawn now, in start order (one with the local engine; one per worker with Redis). */
  readonly running = new Map<string, RunningJob>();
  /** Last position/ETA told to adapters per waiting job: `moved` only fires on a change. */
  readonly published = new Map<string, QueuePosition>();
  /** Estimated seconds per live job; cleared whenever the seconds-per-step figures change. */
  private readonly costs = new Map<string, JobEstimate>();
  private movesScheduled = false;

  constructor(
    private readonly config: Config,
    readonly eta: EtaModel,
    private readonly events: JobEvents,
  ) {}

  // ---- membership ------------------------------------------------------------------------------

  enqueue(job: Job): void {
    freezeParts(job);
    this.live.set(job.id, job);
    this.fair.add({ jobId: job.id, memberKey: memberKeyOf(job.requester), weight: this.weightOf(job.tier), seq: job.seq });
  }

  /**
   * The next job in fair order, taken off the waiting list (still live). With `choose` (engine
   * workers with different models), the first `window` waiting jobs in fair order are offered and
   * the chosen one is taken; none chosen leaves the queue as it was.
   */
  takeNext(choose?: (candidates: Job[]) => Job | undefined, window = CHOICE_WINDOW): Job | undefined {
    if (!choose) {
      const entry = this.fair.next();
      return entry ? this.live.get(entry.jobId) : undefined;
    }
    const candidates: Job[] = [];
    this.fair.forEach((entry) => {
      const job = this.live.get(entry.jobId);
      if (job) candidates.push(job);
    }, window);
    const chosen = candidates.length > 0 ? choose(candidates) : undefined;
    if (!chosen || !this.fair.take(chosen.id)) return undefined;
    return chosen;
  }

  /**
   * The next job for an engine that has `loaded` models in memory (load keys, see
   * model-preference.ts): among the jobs tied with the head for the same fair round (at most
   * PREFER_WITHIN), one whose model (with its LoRAs) is loaded; else the head.
   */
  takeNextPreferring(loaded: readonly string[]): Job | undefined {
    const tied = this.fair.tiedWithHead(PREFER_WITHIN);
    if (loaded.length === 0 || tied < 2) return this.takeNext();
    return this.takeNext((candidates) => preferLoaded(candidates, (job) => isLoadedFor(job.spec, loaded)) ?? candidates[0], tied);
  }

  /** A job that will not run again here (finished, failed, cancelled) leaves the working copy. */
  forget(jobId: string): void {
    if (this.fair.has(jobId)) return; // put back after an engine crash: waiting again
    this.live.delete(jobId);
    this.costs.delete(jobId);
  }

  /** Takes a waiting job out of the queue (cancel); returns what is needed to put it back. */
  withdraw(jobId: string): (() => void) | undefined {
    const entry = this.fair.remove(jobId);
    if (!entry) return undefined;
    const job = this.live.get(jobId);
    this.live.delete(jobId);
    this.costs.delete(jobId);
    this.published.delete(jobId);
    return () => {
      if (job) this.live.set(jobId, job);
      this.fair.add(entry);
    };
  }

  runningOf(jobId: string): RunningJob | undefined {
    return this.running.get(jobId);
  }

  pendingOfMember(member: string): number {
    let running = 0;
    for (const r of this.running.values()) if (memberKeyOf(r.job.requester) === member) running += 1;
    return this.fair.pendingOf(member) + running;
  }

  pendingTotal(): number {
    return this.fair.size + this.running.size;
  }

  /** Tier index (1-based into config.queue.tiers; 0 = default). Highest weight wins. */
  tierOf(requester: Requester): number {
    let best = 0;
    let bestWeight = 1;
    this.config.queue.tiers.forEach((tier, i) => {
      const member =
        tier.users.includes(requester.userId) || tier.roles.some((role) => requester.roles.includes(role));
      if (member && tier.weight > bestWeight) {
        best = i + 1;
        bestWeight = tier.weight;
      }
    });
    return best;
  }

  private weightOf(tier: number): number {
    // A tier removed from the config since the job was queued counts as normal.
    return tier > 0 ? (this.config.queue.tiers[tier - 1]?.weight ?? 1) : 1;
  }

  // ---- positions and ETAs ----------------------------------------------------------------------

  /** The seconds-per-step figures changed: every cached estimate is stale. */
  estimatesChanged(): void {
    this.costs.clear();
  }

  private costOf(job: Job): JobEstimate {
    let estimate = this.costs.get(job.id);
    if (estimate === undefined) {
      estimate = this.eta.job(job.spec);
      this.costs.set(job.id, estimate);
    }
    return estimate;
  }

  private remainingOf(r: RunningJob): JobEstimate {
    const seconds = this.eta.remainingSeconds(r.job.spec, r.step, r.total || stepsToRun(r.job.spec));
    return { seconds, approximate: !this.eta.isMeasured(r.job.spec.model) };
  }

  /** Time until the next slot frees up: the running job that will finish first. */
  private runningRemaining(): JobEstimate {
    let soonest: JobEstimate | undefined;
    for (const r of this.running.values()) {
      const left = this.remainingOf(r);
      if (!soonest || left.seconds < soonest.seconds) soonest = left;
    }
    return soonest ?? { seconds: 0, approximate: false };
  }

  /** Waiting jobs in run order with their positions and ETAs. */
  waitingList(): ({ job: Job } & QueuePosition)[] {
    const jobs: Job[] = [];
    this.fair.forEach((entry) => {
      const job = this.live.get(entry.jobId);
      if (job) jobs.push(job);
    });
    const etas = cumulativeEtas(
      this.runningRemaining(),
      jobs.map((j) => this.costOf(j)),
    );
    return jobs.map((job, i) => ({ job, position: i + 1, ...etaOf(etas[i]) }));
  }

  position(jobId: string): QueuePosition | undefined {
    const run = this.running.get(jobId);
    if (run) {
      const left = this.remainingOf(run);
      return { position: 0, ...etaOf({ ...left, seconds: Math.ceil(left.seconds) }) };
    }
    const place = this.fair.positionOf(jobId);
    if (place === undefined) return undefined;
    // Jobs ahead plus the job itself (the first `place` entries).
    const upTo: JobEstimate[] = [];
    this.fair.forEach((entry) => {
      const job = this.live.get(entry.jobId);
      if (job) upTo.push(this.costOf(job));
    }, place);
    const etas = cumulativeEtas(this.runningRemaining(), upTo);
    return { position: place, ...etaOf(etas[etas.length - 1] ?? this.runningRemaining()) };
  }

  snapshot(): QueueSnapshot {
    const waiting = this.waitingList().map((w) => ({ ...w, job: view(w.job) }));
    const [first, ...more] = [...this.running.values()].map((r) => ({ job: view(r.job), ...(r.shown ?? { step: 0, total: stepsToRun(r.job.spec) }) }));
    if (!first) return { waiting };
    return { running: first, ...(more.length > 0 ? { alsoRunning: more } : {}), waiting };
  }

  /**
   * Coalesces queue movements into one pass of `moved` events. The short window also swallows the
   * gap between one job's end and the next one's start, where every ETA would dip by the
   * finished job's time only to come back a moment later.
   */
  scheduleMoves(): void {
    if (this.movesScheduled) return;
    this.movesScheduled = true;
    const timer = setTimeout(() => {
      this.movesScheduled = false;
      this.publishMoves();
    }, MOVES_COALESCE_MS);
    timer.unref?.();
  }

  private publishMoves(): void {
    const waiting = this.waitingList();
    const still = new Set<string>();
    for (const w of waiting) {
      still.add(w.job.id);
      const before = this.published.get(w.job.id);
      if (before && before.position === w.position && before.etaSeconds === w.etaSeconds && before.approximate === w.approximate) continue;
      const { job, ...where } = w;
      this.published.set(job.id, where);
      // The first number a job gets is announced by `queued`/`resumed`, not `moved`.
      if (before) this.events.emit({ type: 'moved', job: view(job), ...where });
    }
    for (const id of this.published.keys()) if (!still.has(id)) this.published.delete(id);
  }

  /** Announces the first place of a job that (re)joined the queue; returns it. */
  placeOf(job: Job, fallback: QueuePosition): QueuePosition {
    const where = this.position(job.id) ?? fallback;
    this.published.set(job.id, where);
    return where;
  }
}
