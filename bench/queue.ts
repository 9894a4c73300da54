// npm run bench:queue [-- --jobs 10000 --members 500 --run 1000]
//
// Queue and store figures on a real SQLite file with a no-op engine:
//   1. submit throughput through the job service (validation, seq, durable put, fair queue);
//   2. SQLite write latency per job put (p50/p99) during that burst;
//   3. the fair queue alone: add() and next() cost at that size;
//   4. fairness: per member, the first turn and the longest wait between turns (in jobs run),
//      against the ideal for round-robin; and the share a weight-2 tier gets;
//   5. the service running `--run` jobs with the no-op engine while the rest wait (each start
//      moves every waiting job: that is the cost measured here).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import type { Engine, GenerateRequest, GenerateResult } from '../engine/types.js';
import { defaultConfig } from '../src/config/load.js';
import { FairQueue } from '../src/jobs/fair-queue.js';
import { createJobService } from '../src/jobs/service.js';
import type { JobEvent, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { seededUniform } from '../test/fixtures/onnx/reference.js';

function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at >= 0 ? Number(process.argv[at + 1]) : NaN;
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

const JOBS = arg('jobs', 10_000);
const MEMBERS = arg('members', 500);
const RUN = arg('run', 1_000);
const PATRONS = Math.floor(MEMBERS / 10); // members 0..PATRONS-1 are in a weight-2 tier

/** Deterministic PRNG (mulberry32, shared with the test fixtures) so runs are comparable. */
const rng = seededUniform;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const fmt = (n: number, digits = 2) => n.toFixed(digits);

/** A member for each job: random, but every member gets about JOBS/MEMBERS jobs. */
function arrivals(): number[] {
  const random = rng(42);
  const out = Array.from({ length: JOBS }, (_, i) => i % MEMBERS);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

class NoopEngine implements Engine {
  async scanModels() {
    return { models: [], problems: [] };
  }
  provider() {
    return 'cpu' as const;
  }
  async close() {}
  async generate(request: GenerateRequest): Promise<GenerateResult> {
    return {
      images: [{ rgb: new Uint8Array(8 * 8 * 3), width: 8, height: 8, seed: request.seed, infoText: request.prompt }],
      model: request.model,
      provider: 'cpu',
      truncation: {},
      timing: { totalMs: 0, denoiseMs: 0, stepsRun: request.steps },
    };
  }
}

function timedStore(store: Store, samples: number[]): Store {
  const jobs = Object.create(store.jobs) as Store['jobs'];
  jobs.put = async (job) => {
    const t = performance.now();
    await store.jobs.put(job);
    samples.push(performance.now() - t);
  };
  return { ...store, jobs };
}

function fairnessOf(order: number[]): { firstTurnMax: number; gapMax: number; members: number } {
  const last = new Map<number, number>();
  let firstTurnMax = 0;
  let gapMax = 0;
  order.forEach((member, turn) => {
    const prev = last.get(member);
    if (prev === undefined) firstTurnMax = Math.max(firstTurnMax, turn + 1);
    else gapMax = Math.max(gapMax, turn - prev);
    last.set(member, turn);
  });
  return { firstTurnMax, gapMax, members: last.size };
}

async function main(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'bench-queue-'));
  const members = arrivals();
  console.log(`bench:queue — ${JOBS} jobs from ${MEMBERS} members (${PATRONS} in a weight-2 tier), node ${process.version}`);
  try {
    // ---- 3/4. the fair queue alone -------------------------------------------------------------
    for (const weighted of [false, true]) {
      const q = new FairQueue();
      const weight = (m: number) => (weighted && m < PATRONS ? 2 : 1);
      let t = performance.now();
      members.forEach((m, seq) => q.add({ jobId: `j${seq}`, memberKey: `m${m}`, weight: weight(m), seq }));
      const addMs = performance.now() - t;
      const order: number[] = [];
      t = performance.now();
      for (let e = q.next(); e; e = q.next()) order.push(Number(e.memberKey.slice(1)));
      const nextMs = performance.now() - t;
      const f = fairnessOf(order);
      const label = weighted ? 'fair queue, weighted' : 'fair queue, all weight 1';
      console.log(
        `${label}: add ${fmt((addMs * 1000) / JOBS)} µs/job, next() ${fmt((nextMs * 1000) / JOBS)} µs/job; ` +
          `every member's first turn by job #${f.firstTurnMax} (one round: ${weighted ? MEMBERS + PATRONS : MEMBERS}), ` +
          `longest wait between a member's turns ${f.gapMax} jobs`,
      );
      if (weighted) {
        const half = order.slice(0, Math.floor(order.length / 2));
        const patronTurns = half.filter((m) => m < PATRONS).length / PATRONS;
        const normalTurns = half.filter((m) => m >= PATRONS).length / (MEMBERS - PATRONS);
        console.log(`  weight-2 vs weight-1 turns per member in the first half: ${fmt(patronTurns / normalTurns)} : 1`);
      }
    }

    // ---- 1/2. submit through the service on SQLite -----------------------------------------------
    const config = defaultConfig({
      dataDir: path.join(root, 'data'),
      logLevel: 'silent',
      engine: { previews: false },
      queue: {
        perMemberPending: 100,
        globalPending: Math.max(JOBS, 1),
        tiers: [{ name: 'patrons', users: Array.from({ length: PATRONS }, (_, m) => `m${m}`), roles: [], weight: 2 }],
      },
      retention: { days: 0, sweepMinutes: 60 },
    });
    const realStore = await createStore(config);
    const putMs: number[] = [];
    const store = timedStore(realStore, putMs);
    const jobs = createJobService({ config, store, engine: new NoopEngine(), log: pino({ level: 'silent' }) });
    const started: number[] = [];
    let done = 0;
    let moved = 0;
    jobs.on((e: JobEvent) => {
      if (e.type === 'started') started.push(Number(e.job.requester.userId.slice(1)));
      else if (e.type === 'done') done++;
      else if (e.type === 'moved') moved++;
    });
    let t = performance.now();
    for (const [i, m] of members.entries()) {
      const out = await jobs.submit({
        kind: 'imagine',
        spec: {
          prompt: `job ${i}`,
          negativePrompt: '',
          width: 8,
          height: 8,
          steps: 20,
          guidance: 7,
          sampler: 'Euler',
          seed: i,
          count: 1,
          model: 'tiny',
        },
        requester: { platform: 'discord', userId: `m${m}`, name: `m${m}`, roles: [] },
        target: { platform: 'discord', chatId: 'c', handle: {} },
        notes: [],
      });
      if (!out.ok) throw new Error(`submit ${i} refused: ${out.reason}`);
    }
    const submitMs = performance.now() - t;
    const sorted = [...putMs].sort((a, b) => a - b);
    console.log(
      `submit (service → SQLite, WAL, synchronous=FULL): ${fmt(JOBS / (submitMs / 1000), 0)} jobs/s ` +
        `(${fmt(submitMs / JOBS)} ms/job); job put latency p50 ${fmt(percentile(sorted, 50))} ms, ` +
        `p99 ${fmt(percentile(sorted, 99))} ms, max ${fmt(sorted[sorted.length - 1] ?? NaN)} ms`,
    );

    // ---- 5. run part of the queue ------------------------------------------------------------------
    const runCount = Math.min(RUN, JOBS);
    if (runCount > 0) {
      putMs.length = 0;
      t = performance.now();
      await jobs.start();
      while (done < runCount) await new Promise((r) => setTimeout(r, 2));
      const runMs = performance.now() - t;
      await jobs.stop(60_000);
      const f = fairnessOf(started.slice(0, runCount));
      const runPuts = [...putMs].sort((a, b) => a - b);
      console.log(
        `run ${runCount} jobs with a no-op engine and ${JOBS - runCount}+ waiting: ${fmt(runMs / runCount)} ms/job ` +
          `(3 store writes, PNG write + fsync, moved events: ${moved} total); put p50 ${fmt(percentile(runPuts, 50))} ms, ` +
          `p99 ${fmt(percentile(runPuts, 99))} ms; distinct members served ${f.members}, first turn by job #${f.firstTurnMax}`,
      );
    }
    await realStore.close();
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await main();
