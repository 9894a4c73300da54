import { describe, expect, it } from 'vitest';
import { FairQueue } from '../src/jobs/fair-queue.js';

let seq = 0;
function add(q: FairQueue, member: string, weight = 1, id = `${member}${++seq}`): string {
  q.add({ jobId: id, memberKey: member, weight, seq: ++seq });
  return id;
}

function drainMembers(q: FairQueue): string[] {
  const out: string[] = [];
  for (let e = q.next(); e; e = q.next()) out.push(e.memberKey);
  return out;
}

describe('FairQueue', () => {
  it('A queues three, then B one: B runs second', () => {
    const q = new FairQueue();
    add(q, 'A');
    add(q, 'A');
    add(q, 'A');
    add(q, 'B');
    expect(q.order().map((e) => e.memberKey)).toEqual(['A', 'B', 'A', 'A']);
    expect(drainMembers(q)).toEqual(['A', 'B', 'A', 'A']);
  });

  it('counts the job being drawn as its member\'s turn: B, arriving while A1 runs, goes before A2', () => {
    const q = new FairQueue();
    add(q, 'A');
    expect(q.next()?.memberKey).toBe('A'); // A1 starts at once
    add(q, 'A');
    add(q, 'A');
    add(q, 'B');
    expect(q.order().map((e) => e.memberKey)).toEqual(['B', 'A', 'A']);
    // Even when A's queue ran empty in between.
    q.next();
    q.next();
    q.next();
    add(q, 'C');
    expect(q.next()?.memberKey).toBe('C');
    add(q, 'C');
    add(q, 'D');
    expect(q.order().map((e) => e.memberKey)).toEqual(['D', 'C']);
  });

  it('A,A,A,B,C runs A,B,C,A,A', () => {
    const q = new FairQueue();
    for (const m of ['A', 'A', 'A', 'B', 'C']) add(q, m);
    expect(drainMembers(q)).toEqual(['A', 'B', 'C', 'A', 'A']);
  });

  it('keeps arrival order within one member', () => {
    const q = new FairQueue();
    const ids = [add(q, 'A'), add(q, 'B'), add(q, 'A'), add(q, 'A')];
    const order = q.order().map((e) => e.jobId);
    expect(order.filter((id) => id.startsWith('A'))).toEqual([ids[0], ids[2], ids[3]]);
  });

  it('gives a weight-2 member two turns per turn of a weight-1 member, and the weight-1 member still runs', () => {
    const q = new FairQueue();
    for (let i = 0; i < 12; i++) add(q, 'P', 2);
    for (let i = 0; i < 12; i++) add(q, 'N', 1);
    const firstNine = q.order().slice(0, 9).map((e) => e.memberKey);
    expect(firstNine.filter((m) => m === 'P')).toHaveLength(6);
    expect(firstNine.filter((m) => m === 'N')).toHaveLength(3);
    // Never more than two P turns in a row while N waits.
    const all = drainMembers(q);
    const untilNDone = all.slice(0, all.lastIndexOf('N') + 1).join('');
    expect(untilNDone).not.toMatch(/PPP/);
    expect(all.filter((m) => m === 'N')).toHaveLength(12);
  });

  it('does not let a member with many jobs starve one who arrives later', () => {
    const q = new FairQueue();
    for (let i = 0; i < 50; i++) add(q, 'A');
    // A's first ten run, then B shows up: B waits at most one A job.
    for (let i = 0; i < 10; i++) expect(q.next()?.memberKey).toBe('A');
    const b = add(q, 'B');
    expect(q.positionOf(b)).toBeLessThanOrEqual(2);
    expect(drainMembers(q).slice(0, 2)).toContain('B');
  });

  it('lets a member who keeps coming back alternate with a heavy member instead of waiting for all of it', () => {
    const q = new FairQueue();
    for (let i = 0; i < 20; i++) add(q, 'A');
    const ran: string[] = [];
    add(q, 'B');
    for (let round = 0; round < 10; round++) {
      const e = q.next()!;
      ran.push(e.memberKey);
      // B sends a new request as soon as the previous one ran.
      if (e.memberKey === 'B') add(q, 'B');
    }
    expect(ran.filter((m) => m === 'B').length).toBeGreaterThanOrEqual(5);
  });

  it('does not bank credit for an idle member', () => {
    const q = new FairQueue();
    for (let i = 0; i < 30; i++) add(q, 'A');
    for (let i = 0; i < 20; i++) q.next();
    // C was idle for twenty turns; it gets its fair share from now on, not twenty turns in a row.
    for (let i = 0; i < 5; i++) add(q, 'C');
    expect(q.order().slice(0, 6).map((e) => e.memberKey).join('')).toMatch(/^(AC|CA)(AC|CA)(AC|CA)$/);
  });

  it('keeps the rest consistent when a waiting job is removed', () => {
    const q = new FairQueue();
    const a1 = add(q, 'A');
    const a2 = add(q, 'A');
    const a3 = add(q, 'A');
    const b1 = add(q, 'B');
    const b2 = add(q, 'B');
    const c1 = add(q, 'C');
    expect(q.order().map((e) => e.jobId)).toEqual([a1, b1, c1, a2, b2, a3]);

    expect(q.remove(a2)?.jobId).toBe(a2);
    expect(q.remove(a2)).toBeUndefined();
    // A's third job moves up into the place of the cancelled one: cancelling costs no turn.
    expect(q.order().map((e) => e.jobId)).toEqual([a1, b1, c1, a3, b2]);
    expect(q.size).toBe(5);
    expect(q.pendingOf('A')).toBe(2);
    expect(q.positionOf(a3)).toBe(4);
    expect(q.positionOf(a2)).toBeUndefined();

    // Same rule at the head: A's remaining job takes A's first turn (it arrived before B's).
    q.remove(a1);
    expect(q.order().map((e) => e.jobId)).toEqual([a3, b1, c1, b2]);
    expect(q.next()?.jobId).toBe(a3);
    expect(q.order().map((e) => e.jobId)).toEqual([b1, c1, b2]);
    expect(q.has(a1)).toBe(false);
  });

  it('ignores a job added twice and reports positions and per-member counts', () => {
    const q = new FairQueue();
    const a = add(q, 'A');
    expect(q.add({ jobId: a, memberKey: 'A', weight: 1, seq: 999 })).toBe(false);
    add(q, 'A');
    const b = add(q, 'B');
    expect(q.size).toBe(3);
    expect(q.pendingOf('A')).toBe(2);
    expect(q.pendingOf('Z')).toBe(0);
    expect(q.positionOf(b)).toBe(2);
    expect(q.peek()?.jobId).toBe(a);
    expect(q.size).toBe(3);
  });

  it('gives the same order when rebuilt from seq after a restart as a fresh queue of the same jobs', () => {
    const entries = [
      { jobId: 'x1', memberKey: 'A', weight: 1, seq: 1 },
      { jobId: 'x2', memberKey: 'A', weight: 1, seq: 2 },
      { jobId: 'x3', memberKey: 'B', weight: 2, seq: 3 },
      { jobId: 'x4', memberKey: 'B', weight: 2, seq: 4 },
      { jobId: 'x5', memberKey: 'C', weight: 1, seq: 5 },
    ];
    const inOrder = new FairQueue();
    for (const e of entries) inOrder.add(e);
    const shuffled = new FairQueue();
    for (const e of [entries[3]!, entries[0]!, entries[4]!, entries[2]!, entries[1]!]) shuffled.add(e);
    expect(shuffled.order()).toEqual(inOrder.order());
  });

  it('keeps one member order from round to round, so nobody waits more than one round between turns', () => {
    const q = new FairQueue();
    // Arrivals interleaved unevenly: E's last job arrives first among the stragglers, A's last.
    const arrivals = 'ABCDEEDCBAEDCBAABCDEEDCBA'.split('');
    arrivals.forEach((m, i) => q.add({ jobId: `${m}${i}`, memberKey: m, weight: 1, seq: i }));
    expect(drainMembers(q).join('')).toBe('ABCDE'.repeat(5));
  });

  it('stays fair across 100 members with uneven loads', () => {
    const q = new FairQueue();
    let s = 0;
    for (let round = 0; round < 20; round++) {
      for (let m = 0; m < 100; m++) if (m % 20 >= round) q.add({ jobId: `j${s}`, memberKey: `m${m}`, weight: 1, seq: s++ });
    }
    // In any window, no member runs twice before every member with jobs left has run once.
    const seen = new Set<string>();
    let round = 0;
    for (let e = q.next(); e; e = q.next()) {
      if (seen.has(e.memberKey)) {
        expect.fail(`member ${e.memberKey} ran twice in round ${round}`);
      }
      seen.add(e.memberKey);
      const waitingMembers = new Set(q.order().map((x) => x.memberKey));
      if ([...waitingMembers].every((m) => seen.has(m))) {
        seen.clear();
        round++;
      }
    }
    expect(round).toBeGreaterThanOrEqual(19);
  });
});
