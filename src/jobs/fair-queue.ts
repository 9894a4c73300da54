/**
 * The order in which waiting jobs get the GPU: weighted fair queueing between members.
 *
 * Policy (weighted fair queueing with start-time virtual time):
 * - Every job costs one turn. A member whose tier has weight w pays 1/w of a turn per job
 *   (integer arithmetic: TURN / w with TURN = 2520, divisible by every weight 1…10).
 * - The queue keeps a virtual time V: the start tag of the job handed out last by next(), i.e.
 *   the round that is being served now.
 * - A job arriving for member m starts at S = max(V, finish tag of m's previous job, waiting or
 *   already served) and finishes at F = S + TURN / w.
 * - Jobs run in order of F. Equal F (the same round) goes to the member who has been waiting
 *   longest — the seq of the job that brought the member into the queue — so members keep one
 *   order from round to round and nobody waits more than one full round between turns; within
 *   one member, jobs keep their arrival order.
 *
 * Consequences, which the tests pin down:
 * - Weight 1 everywhere is plain round-robin: a member's second waiting job (F = V + 2 turns)
 *   runs after every other member's first (F = V + 1 turn). A,A,A,B,C runs A,B,C,A,A.
 * - The job being drawn counts as its member's turn of the current round: when A's first job
 *   starts at once and A queues more, B arriving later still runs before A's second.
 * - A member with weight 2 gets two turns per turn of a weight-1 member, and the weight-1 member
 *   still runs every round: boost without starvation.
 * - A member who arrives late starts at the current V, not at zero, so a member with a hundred
 *   jobs waiting cannot push them back by more than one round; an idle member earns no credit.
 * - Removing a waiting job (cancel) re-chains that member's later jobs as if it had never been
 *   queued, so cancelling never costs the member their place.
 *
 * The order depends only on arrival order (seq), member and weight, plus how far the queue has
 * moved (V). After a restart the waiting jobs are added again in seq order with V = 0, which
 * gives the plain fair order of what is left; no clock, no randomness.
 *
 * Pure and synchronous: no I/O, no timers; the job service drives it.
 */

export interface FairEntry {
  jobId: string;
  /** One member across jobs, e.g. `discord:1234`. */
  memberKey: string;
  /** Tier weight, 1 = normal. */
  weight: number;
  /** Arrival order; unique. */
  seq: number;
}

interface Slot extends FairEntry {
  /** Tie-break within a round: the member's place in line (see MemberState.since). */
  since: number;
  /** V when the job arrived; re-chaining never starts a job before it arrived. */
  arrivalV: number;
  start: number;
  finish: number;
}

interface MemberState {
  /** This member's waiting jobs in seq order. */
  waiting: Slot[];
  /** Finish tag of this member's last job handed out by next(). */
  servedFinish: number;
  /** Seq of the job that brought this member into the queue: its place in line within a round. */
  since: number;
}

const TURN = 2520;

function costOf(weight: number): number {
  const w = Number.isFinite(weight) ? Math.min(10, Math.max(1, Math.round(weight))) : 1;
  return TURN / w;
}

function runsBefore(a: Slot, b: Slot): boolean {
  if (a.finish !== b.finish) return a.finish < b.finish;
  if (a.since !== b.since) return a.since < b.since;
  return a.seq < b.seq;
}

export class FairQueue {
  /** All waiting slots in the order they will run. */
  private readonly ordered: Slot[] = [];
  private readonly byId = new Map<string, Slot>();
  private readonly members = new Map<string, MemberState>();
  private virtualTime = 0;
  private handedOut = 0;

  get size(): number {
    return this.ordered.length;
  }

  has(jobId: string): boolean {
    return this.byId.has(jobId);
  }

  /** Adds a waiting job; false when the id is already waiting. */
  add(entry: FairEntry): boolean {
    if (this.byId.has(entry.jobId)) return false;
    let member = this.members.get(entry.memberKey);
    if (!member) {
      member = { waiting: [], servedFinish: 0, since: entry.seq };
      this.members.set(entry.memberKey, member);
    }
    const slot: Slot = { ...entry, since: member.since, arrivalV: this.virtualTime, start: 0, finish: 0 };
    this.byId.set(slot.jobId, slot);
    const last = member.waiting[member.waiting.length - 1];
    if (!last || last.seq < slot.seq) {
      slot.start = Math.max(this.virtualTime, last ? last.finish : member.servedFinish);
      slot.finish = slot.start + costOf(slot.weight);
      member.waiting.push(slot);
      this.insertOrdered(slot);
    } else {
      // Out-of-order arrival (only if a caller re-adds older jobs late): rebuild the chain.
      const at = member.waiting.findIndex((s) => s.seq > slot.seq);
      member.waiting.splice(at, 0, slot);
      slot.finish = Number.NEGATIVE_INFINITY;
      this.insertOrdered(slot);
      if (slot.seq < member.since) {
        // The member has been in line since this older job: move all of its jobs accordingly.
        member.since = slot.seq;
        for (const s of member.waiting) {
          this.removeOrdered(s);
          s.since = slot.seq;
          this.insertOrdered(s);
        }
      }
      this.rechain(member);
    }
    return true;
  }

  /** Removes a waiting job (cancelled); returns it, or undefined when it was not waiting. */
  remove(jobId: string): FairEntry | undefined {
    const slot = this.byId.get(jobId);
    if (!slot) return undefined;
    this.removeOrdered(slot);
    this.byId.delete(jobId);
    const member = this.members.get(slot.memberKey);
    if (member) {
      member.waiting.splice(member.waiting.indexOf(slot), 1);
      if (member.waiting.length === 0 && member.servedFinish <= this.virtualTime) this.members.delete(slot.memberKey);
      else this.rechain(member);
    }
    return toEntry(slot);
  }

  /** Hands out the job that runs next and removes it from the queue. */
  next(): FairEntry | undefined {
    const slot = this.ordered[0];
    return slot ? this.serve(slot) : undefined;
  }

  /**
   * Hands out a particular waiting job as if it were next (a job the head's engine workers
   * cannot run yet is skipped for one they can); its member's turn is used up as with next().
   */
  take(jobId: string): FairEntry | undefined {
    const slot = this.byId.get(jobId);
    return slot ? this.serve(slot) : undefined;
  }

  private serve(slot: Slot): FairEntry {
    this.removeOrdered(slot);
    this.byId.delete(slot.jobId);
    this.virtualTime = Math.max(this.virtualTime, slot.start);
    const member = this.members.get(slot.memberKey);
    if (member) {
      member.waiting.splice(member.waiting.indexOf(slot), 1);
      member.servedFinish = slot.finish;
    }
    if (++this.handedOut % 256 === 0) this.forgetIdleMembers();
    return toEntry(slot);
  }

  peek(): FairEntry | undefined {
    const slot = this.ordered[0];
    return slot ? toEntry(slot) : undefined;
  }

  /** Waiting jobs in the order they will run. */
  order(): FairEntry[] {
    return this.ordered.map(toEntry);
  }

  /**
   * Visits waiting jobs in run order without copying them (the service walks this on every
   * move); `limit` stops after that many.
   */
  forEach(visit: (entry: Readonly<FairEntry>, index: number) => void, limit = Number.POSITIVE_INFINITY): void {
    const end = Math.min(limit, this.ordered.length);
    for (let i = 0; i < end; i++) visit(this.ordered[i]!, i);
  }

  /**
   * How many waiting jobs at the front share the head's finish tag (the same fair round: any order
   * among them gives every member the same turns), at most `limit`.
   */
  tiedWithHead(limit = Number.POSITIVE_INFINITY): number {
    const head = this.ordered[0];
    if (!head) return 0;
    let n = 1;
    while (n < limit && n < this.ordered.length && this.ordered[n]!.finish === head.finish) n++;
    return n;
  }

  /** 1-based place in the run order, or undefined when not waiting. */
  positionOf(jobId: string): number | undefined {
    const slot = this.byId.get(jobId);
    if (!slot) return undefined;
    return this.indexOf(slot) + 1;
  }

  /** How many jobs this member has waiting. */
  pendingOf(memberKey: string): number {
    return this.members.get(memberKey)?.waiting.length ?? 0;
  }

  /**
   * A member with nothing waiting whose last turn lies behind V has no history that matters any
   * more (its next job starts at V either way); dropping it keeps memory bounded by the members
   * who are active now. Kept while servedFinish > V: that member already had this round's turn.
   */
  private forgetIdleMembers(): void {
    for (const [key, member] of this.members) {
      if (member.waiting.length === 0 && member.servedFinish <= this.virtualTime) this.members.delete(key);
    }
  }

  /** Recomputes a member's tags as if only its current waiting jobs had ever been queued. */
  private rechain(member: MemberState): void {
    let previousFinish = member.servedFinish;
    for (const slot of member.waiting) {
      const start = Math.max(slot.arrivalV, previousFinish);
      const finish = start + costOf(slot.weight);
      if (finish !== slot.finish || start !== slot.start) {
        this.removeOrdered(slot);
        slot.start = start;
        slot.finish = finish;
        this.insertOrdered(slot);
      }
      previousFinish = finish;
    }
  }

  /** First index whose slot does not run before `slot`. */
  private lowerBound(slot: Slot): number {
    let lo = 0;
    let hi = this.ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const probe = this.ordered[mid]!;
      if (runsBefore(probe, slot)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private indexOf(slot: Slot): number {
    const at = this.lowerBound(slot);
    if (this.ordered[at] === slot) return at;
    // Only reachable if two slots share seq and finish; fall back to a scan.
    return this.ordered.indexOf(slot);
  }

  private insertOrdered(slot: Slot): void {
    this.ordered.splice(this.lowerBound(slot), 0, slot);
  }

  private removeOrdered(slot: Slot): void {
    const at = this.indexOf(slot);
    if (at >= 0) this.ordered.splice(at, 1);
  }
}

function toEntry(slot: Slot): FairEntry {
  return { jobId: slot.jobId, memberKey: slot.memberKey, weight: slot.weight, seq: slot.seq };
}
