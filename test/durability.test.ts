// "Nothing is lost": the bot is SIGKILLed between states (a child process on a real SQLite file),
// then a second life starts on the same data directory.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { createJobService, type JobServiceWithMaintenance } from '../src/jobs/service.js';
import type { JobEvent, Store } from '../src/jobs/types.js';
import { createStore } from '../src/store/index.js';
import { durabilityInput, ScriptedEngine } from './fixtures/durability-engine.js';
import { until } from './helpers/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'fixtures', 'durability-child.ts');

interface Line {
  type: string;
  id: string;
  prompt?: string;
  seq?: number;
}

/** Runs the first life and SIGKILLs it as soon as `killWhen` holds for the lines seen so far. */
function runChildUntil(dataDir: string, mode: string, killWhen: (lines: Line[]) => boolean): Promise<Line[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, mode], {
      cwd: path.resolve(here, '..'),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: Line[] = [];
    let buffered = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const text = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (!text.trim()) continue;
        if (killed) continue; // anything after the kill decision is not part of the first life's record
        lines.push(JSON.parse(text) as Line);
        if (killWhen(lines)) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (killed && signal === 'SIGKILL') resolve(lines);
      else reject(new Error(`child ended without the planned kill (${signal ?? _code}): ${stderr.slice(-2000)}`));
    });
  });
}

let root: string;
let second: { jobs: JobServiceWithMaintenance; store: Store } | undefined;
beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'durability-'));
});
afterEach(async () => {
  if (second) {
    await second.jobs.stop(0);
    await second.store.close();
    second = undefined;
  }
  await rm(root, { recursive: true, force: true });
});

async function secondLife(dataDir: string, engine: ScriptedEngine) {
  const config = defaultConfig({
    dataDir,
    storage: { url: `sqlite://${path.join(dataDir, 'bot.sqlite')}` },
    engine: { previews: false },
    queue: { perMemberPending: 50, globalPending: 500, maxAttempts: 3 },
  });
  const store = await createStore(config);
  const jobs = createJobService({ config, store, engine, log: pino({ level: 'silent' }) });
  second = { jobs, store };
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  await jobs.start();
  return { jobs, store, events };
}

const ofType = <T extends JobEvent['type']>(events: JobEvent[], type: T) =>
  events.filter((e): e is Extract<JobEvent, { type: T }> => e.type === type);

describe('durability across SIGKILL', () => {
  it('resumes queued and running jobs in order, re-runs the killed one once, delivers done ones without re-rendering, never repeats a delivered one', async () => {
    const dataDir = path.join(root, 'data');
    const first = await runChildUntil(
      dataDir,
      'lifecycle',
      // "hang" starts drawing while "leave-done"'s pictures are still being written: wait for both.
      (lines) =>
        lines.some((l) => l.type === 'delivered') &&
        lines.some((l) => l.type === 'done' && l.prompt === 'leave-done') &&
        lines.some((l) => l.type === 'progress' && l.prompt === 'hang'),
    );
    const idOf = (prompt: string) => first.find((l) => l.type === 'submitted' && l.prompt === prompt)!.id;
    const [delivered, doneOnly, hung, q1, q2, q3] = ['deliver-me', 'leave-done', 'hang', 'queued-1', 'queued-2', 'queued-3'].map(idOf);
    // The first life got exactly this far: (d) one delivered, (c) one done, (b) one mid-run, (a) three queued.
    // (Pictures are written while the next job draws, so the two may finish in either order.)
    expect(first.filter((l) => l.type === 'done').map((l) => l.prompt).sort()).toEqual(['deliver-me', 'leave-done']);
    expect(first.filter((l) => l.type === 'started').map((l) => l.prompt)).toEqual(['deliver-me', 'leave-done', 'hang']);

    const engine = new ScriptedEngine();
    const { jobs, events } = await secondLife(dataDir, engine);

    // Requesters of waiting jobs are told, in the order the jobs were submitted.
    const resumed = events.filter((e): e is Extract<JobEvent, { type: 'resumed' }> => e.type === 'resumed');
    expect(resumed.map((e) => e.job.id)).toEqual([hung, q1, q2, q3]);
    expect(resumed.map((e) => e.position)).toEqual([1, 2, 3, 4]);
    // The kill is counted as an interruption, never as an engine crash of the request.
    expect([resumed[0]!.job.attempts, resumed[0]!.job.interruptions]).toEqual([0, 1]);

    // The done-but-undelivered job is waiting for its adapter, with its pictures, not re-rendered.
    const pending = await jobs.pendingDeliveries('telegram');
    expect(pending.map((j) => j.id)).toContain(doneOnly);
    expect(pending.map((j) => j.id)).not.toContain(delivered);
    const doneJob = pending.find((j) => j.id === doneOnly)!;
    expect(doneJob.result!.images.every((i) => existsSync(jobs.filePath(i.file)))).toBe(true);

    await until(() => events.filter((e) => e.type === 'done').length === 4, 'the four resumed jobs to finish');
    expect(engine.calls.map((c) => c.prompt)).toEqual(['hang', 'queued-1', 'queued-2', 'queued-3']);
    expect((await jobs.get(hung!))?.attempts).toBe(0);
    expect(events.filter((e) => e.type === 'done').map((e) => e.job.id)).not.toContain(doneOnly);

    // The delivered job stays delivered, and everything a button or a reaction needs still resolves.
    const again = await jobs.get(delivered!);
    expect(again?.status).toBe('delivered');
    expect(again?.result?.images).toHaveLength(2);
    expect((await jobs.findByMessage('telegram', 'chat-A', 'result-1'))?.id).toBe(delivered);
    const redelivery = await jobs.submit(durabilityInput('deliver-me', 'A', 'tg:chat-A:1'));
    expect(redelivery.ok && redelivery.duplicate && redelivery.job.id).toBe(delivered);
    expect(engine.calls).toHaveLength(4);
  });

  it('finishes a job that was drawing during three SIGKILLs (an outside kill is not the request\'s fault)', async () => {
    const dataDir = path.join(root, 'data');
    const lives: Line[][] = [];
    for (let life = 0; life < 3; life++) {
      lives.push(await runChildUntil(dataDir, 'hang', (lines) => lines.some((l) => l.type === 'progress' && l.prompt === 'hang')));
    }
    const ids = new Set(lives.map((lines) => lines.find((l) => l.type === 'submitted')!.id));
    expect(ids.size).toBe(1);
    const [id] = [...ids];
    // Before the fix the fourth start failed it as "crashed the picture engine 3 times".
    const engine = new ScriptedEngine();
    const { jobs, events } = await secondLife(dataDir, engine);
    expect(ofType(events, 'resumed').map((e) => e.job.id)).toEqual([id]);
    await until(() => events.some((e) => e.type === 'done'), 'the thrice-interrupted job to finish');
    expect(ofType(events, 'failed')).toEqual([]);
    const job = await jobs.get(id!);
    expect([job?.status, job?.attempts, job?.interruptions]).toEqual(['done', 0, 3]);
  });

  it('keeps every acknowledged job of a burst that was killed mid-way, with rising seq numbers', async () => {
    const dataDir = path.join(root, 'data');
    const first = await runChildUntil(dataDir, 'burst', (lines) => lines.filter((l) => l.type === 'submitted').length >= 25);
    const acked = first.filter((l) => l.type === 'submitted');
    expect(acked.length).toBeGreaterThanOrEqual(25);

    const engine = new ScriptedEngine({ hold: true });
    const { store, events } = await secondLife(dataDir, engine);
    for (const line of acked) {
      const job = await store.jobs.get(line.id);
      expect(job?.status, `job ${line.id}`).toMatch(/^(queued|running)$/);
    }
    const seqs = acked.map((l) => l.seq!);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    const resumedIds = new Set(events.filter((e) => e.type === 'resumed').map((e) => e.job.id));
    expect(acked.every((l) => resumedIds.has(l.id))).toBe(true);
    // A new job after the restart gets a seq above every one handed out before the kill.
    const fresh = await second!.jobs.submit(durabilityInput('after restart', 'zz'));
    expect(fresh.ok && fresh.job.seq).toBeGreaterThan(Math.max(...seqs));
  });
});
