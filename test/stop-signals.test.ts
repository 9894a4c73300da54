// Stop signals through the path a supervisor uses: `npm start` as the started process, SIGTERM
// to its pid (Docker with `npm start` as PID 1) and to its process group (systemd's default,
// Ctrl-C in a terminal). The bot runs for real: a tiny model on the real engine, the real
// Telegram adapter against the fake Bot API, SQLite in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { createStore } from '../src/store/index.js';
import { classifySignal, DUPLICATE_WINDOW_MS } from '../src/stop-signals.js';
import { FakeBotApi } from './fakes/telegram/server.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const WAIT_MS = 90_000;

interface LogLine {
  msg?: string;
  pid?: number;
  jobId?: string;
  signal?: string;
}

interface Bot {
  child: ChildProcess;
  lines: LogLine[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let root: string;
let fake: FakeBotApi;
let bots: Bot[] = [];

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'stop-signals-'));
  fake = await FakeBotApi.start();
  // Heavy enough that 150 steps × 4 pictures take seconds on one CPU thread.
  await writeTinyModel(path.join(root, 'models', 'tiny'), { generation: 'optimum-new', unet: 'smooth', unetBody: { channels: 32, layers: 4 } });
});

afterEach(async () => {
  for (const bot of bots) {
    if (bot.child.exitCode === null && bot.child.signalCode === null) process.kill(-bot.child.pid!, 'SIGKILL');
  }
  bots = [];
  fake.releaseAll();
  await fake.close();
  await rm(root, { recursive: true, force: true });
});

function configFor(graceSeconds: number) {
  return {
    dataDir: path.join(root, 'data'),
    logLevel: 'debug' as const,
    storage: { url: `sqlite://${path.join(root, 'data', 'bot.sqlite')}` },
    models: { dir: path.join(root, 'models'), default: 'tiny' },
    engine: { providers: ['cpu' as const], threads: 1, warmup: false, previews: false },
    limits: { maxSteps: 150 },
    queue: { shutdownGraceSeconds: graceSeconds },
    telegram: { apiRoot: fake.apiRoot },
  };
}

/** `npm start` in its own process group, as a supervisor starts it. */
async function npmStart(graceSeconds: number): Promise<Bot> {
  const file = path.join(root, 'bot.jsonc');
  await writeFile(file, JSON.stringify(configFor(graceSeconds)));
  const child = spawn('npm', ['start'], {
    cwd: REPO,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME, BOT_CONFIG: file, TELEGRAM_TOKEN: fake.token },
  });
  const lines: LogLine[] = [];
  let buffered = '';
  const read = (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const text = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (text.startsWith('{')) lines.push(JSON.parse(text) as LogLine);
    }
  };
  child.stdout!.on('data', read);
  child.stderr!.on('data', read);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const bot = { child, lines, exited };
  bots.push(bot);
  return bot;
}

async function until<T>(find: () => T | undefined, what: string): Promise<T> {
  for (let waited = 0; waited < WAIT_MS; waited += 50) {
    const found = find();
    if (found !== undefined) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`gave up waiting for ${what}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const logged = (bot: Bot, msg: string) => bot.lines.filter((l) => l.msg === msg);

/** Starts the bot, asks for a long job and returns once the engine is drawing it. */
async function botDrawing(graceSeconds: number): Promise<{ bot: Bot; jobId: string; botPid: number }> {
  const bot = await npmStart(graceSeconds);
  await until(() => logged(bot, 'adapter started')[0], 'the Telegram adapter');
  const member = fake.user(501, 'Mona', 'mona');
  fake.sendText(fake.privateChat(member), member, 'a fox in the snow --steps 150 --size 512x512 --n 4');
  const started = await until(() => logged(bot, 'job started')[0], 'the job to start');
  return { bot, jobId: started.jobId!, botPid: started.pid! };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The stopped job: back in the queue or finished within the grace period, never counted against it. */
async function storedJob(jobId: string) {
  const store = await createStore(defaultConfig(configFor(1)));
  try {
    return await store.jobs.get(jobId);
  } finally {
    await store.close();
  }
}

describe('stop signals through npm start', () => {
  it('tells a forwarded copy from a second signal by the time between them', () => {
    expect(classifySignal(undefined, 5)).toBe('first');
    expect(classifySignal(1_000, 1_003)).toBe('duplicate');
    expect(classifySignal(1_000, 1_000 + DUPLICATE_WINDOW_MS)).toBe('second');
  });

  it('SIGTERM to the pid npm start was given: graceful stop, exit 0, nothing orphaned, the job not counted', async () => {
    const { bot, jobId, botPid } = await botDrawing(1);
    expect(botPid).not.toBe(bot.child.pid); // npm is really in between
    process.kill(bot.child.pid!, 'SIGTERM');
    const exit = await bot.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    await until(() => (alive(botPid) ? undefined : true), 'the bot process to be gone');
    expect(logged(bot, 'shutting down').map((l) => l.signal)).toEqual(['SIGTERM']);
    expect(logged(bot, 'stopped')).toHaveLength(1);
    expect(logged(bot, 'second signal: exiting now')).toEqual([]);
    const job = await storedJob(jobId);
    expect(['queued', 'done', 'delivered']).toContain(job?.status);
    expect([job?.attempts, job?.interruptions ?? 0]).toEqual([0, 0]);
  }, 180_000);

  it('SIGTERM to the process group (systemd): npm\'s forwarded copy is not a second signal', async () => {
    const { bot, jobId, botPid } = await botDrawing(1);
    process.kill(-bot.child.pid!, 'SIGTERM');
    const exit = await bot.exited;
    expect(exit.code).toBe(0);
    await until(() => (alive(botPid) ? undefined : true), 'the bot process to be gone');
    expect(logged(bot, 'shutting down')).toHaveLength(1);
    // npm's copy usually arrives as a separate signal a millisecond later (ignored, logged at
    // debug); when both are still pending together the kernel merges them into one.
    expect(logged(bot, 'repeated signal within a moment of the first: taken for a forwarded copy').length).toBeLessThanOrEqual(1);
    expect(logged(bot, 'second signal: exiting now')).toEqual([]);
    expect(logged(bot, 'stopped')).toHaveLength(1);
    const job = await storedJob(jobId);
    expect([job?.attempts, job?.interruptions ?? 0]).toEqual([0, 0]);
  }, 180_000);

  it('Ctrl-C (SIGINT to the group) starts the grace period; a second Ctrl-C later exits at once', async () => {
    const { bot, jobId, botPid } = await botDrawing(120);
    process.kill(-bot.child.pid!, 'SIGINT');
    await until(() => logged(bot, 'shutting down')[0], 'the graceful stop to begin');
    await sleep(DUPLICATE_WINDOW_MS + 200);
    // The job (seconds of work) is still drawing inside its 120 s grace period.
    expect(logged(bot, 'stopped')).toEqual([]);
    process.kill(-bot.child.pid!, 'SIGINT');
    // npm passes on how its child ended: killed at once, not a clean exit and not an abort.
    expect(await bot.exited).toEqual({ code: null, signal: 'SIGKILL' });
    await until(() => (alive(botPid) ? undefined : true), 'the bot process to be gone');
    expect(logged(bot, 'second signal: exiting now')).toHaveLength(1);
    expect(logged(bot, 'stopped')).toEqual([]);
    // Cut short like a kill: the job waits in the store for the next start, as running, and
    // an engine crash is not counted against it.
    const job = await storedJob(jobId);
    expect([job?.status, job?.attempts]).toEqual(['running', 0]);
  }, 180_000);
});
