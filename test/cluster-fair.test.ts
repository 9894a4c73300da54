// Fairness survives distribution: the order in which jobs start across 1 and 3 engine workers
// (Redis backend) is the order the local backend starts them in — round-robin between members,
// tiers honoured — because the bot keeps the fair queue and hands a job over only when a
// worker is free.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import type { Config } from '../src/config/schema.js';
import { createRedisJobService } from '../src/jobs/backend.js';
import { createJobService, type ComposedJobService } from '../src/jobs/service.js';
import type { SubmitInput } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { startInProcessWorker } from './helpers/cluster.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

if (!HAVE_REDIS) console.warn('cluster-fair: no redis-server on PATH (apt-get install redis-server); skipped');

const silent = pino({ level: 'silent' });
let redis: TestRedis | undefined;
let runs = 0;

beforeAll(async () => {
  if (HAVE_REDIS) redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

/** Members a–e; `vip` is in a weight-2 tier. */
const SCENARIO: [string, string][] = [
  ['a1', 'a'], ['a2', 'a'], ['a3', 'a'], ['a4', 'a'],
  ['v1', 'vip'], ['v2', 'vip'], ['v3', 'vip'], ['v4', 'vip'],
  ['b1', 'b'], ['b2', 'b'], ['c1', 'c'], ['d1', 'd'], ['e1', 'e'], ['e2', 'e'],
];

function input(prompt: string, member: string): SubmitInput {
  return durabilityInput(prompt, member);
}

/** Submits the scenario before start, runs it, and returns the prompts in start order. */
async function startOrder(backend: 'local' | 'redis', workers: number): Promise<string[]> {
  const root = await mkdtemp(path.join(tmpdir(), 'cluster-fair-'));
  const config: Config = defaultConfig({
    dataDir: root,
    storage: { url: `sqlite://${path.join(root, 'bot.sqlite')}` },
    engine: { previews: false },
    queue: {
      perMemberPending: 10,
      tiers: [{ name: 'patrons', users: ['vip'], roles: [], weight: 2 }],
      backend,
      redis: { url: redis?.url ?? 'redis://127.0.0.1:1', prefix: `fair${++runs}` },
    },
  });
  const store = await createStore(config);
  const stops: (() => Promise<void>)[] = [];
  let jobs: ComposedJobService;
  if (backend === 'redis') {
    for (let i = 0; i < workers; i++) stops.push(await startInProcessWorker(config, new ScriptedEngine({ stepMs: 5 }), `w${i}`));
    const remote = await createRedisJobService({ config, store, engine: new ScriptedEngine(), log: silent });
    await remote.refreshWorkers();
    expect(remote.workers()).toHaveLength(workers);
    jobs = remote;
  } else {
    jobs = createJobService({ config, store, engine: new ScriptedEngine({ stepMs: 5 }), log: silent });
  }
  const started: string[] = [];
  let ended = 0;
  jobs.on((e) => {
    if (e.type === 'started') started.push(e.job.spec.prompt);
    if (e.type === 'done' || e.type === 'failed') ended += 1;
  });
  for (const [prompt, member] of SCENARIO) {
    const out = await jobs.submit(input(prompt, member));
    expect(out.ok).toBe(true);
  }
  await jobs.start();
  for (let i = 0; i < 1200 && ended < SCENARIO.length; i++) await new Promise((r) => setTimeout(r, 25));
  await jobs.stop(0);
  for (const stop of stops) await stop();
  await store.close();
  await rm(root, { recursive: true, force: true });
  expect(ended).toBe(SCENARIO.length);
  return started;
}

describe.skipIf(!HAVE_REDIS)('cluster: fairness across workers', () => {
  it('starts jobs in the local backend’s weighted round-robin order with 1 and with 3 workers', async () => {
    const local = await startOrder('local', 1);
    // The policy itself: one turn a round for everyone, two for the weight-2 member, no one starved.
    expect(local).toEqual(['v1', 'a1', 'v2', 'b1', 'c1', 'd1', 'e1', 'v3', 'a2', 'v4', 'b2', 'e2', 'a3', 'a4']);
    expect(await startOrder('redis', 1)).toEqual(local);
    expect(await startOrder('redis', 3)).toEqual(local);
  }, 120_000);
});
