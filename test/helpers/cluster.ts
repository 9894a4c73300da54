// Engine worker processes for the cluster tests: the real `src/worker.ts` (what `npm run worker`
// runs) on tiny models, configured through BOT_CONFIG like a worker on a second machine.
import { spawn, type ChildProcess } from 'node:child_process';
import { cp, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pino from 'pino';
import type { Engine } from '../../engine/types.js';
import { defaultConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startEngineWorker } from '../../src/jobs/redis/engine-worker.js';
import { openQueueConnection } from '../../src/store/queue-connection.js';
import { modelInfo } from '../fixtures/model-info.js';
import { writeTinyModel } from '../fixtures/tiny-models.js';

const REPO = path.resolve(import.meta.dirname, '../..');

export interface ClusterQueueSettings {
  url: string;
  prefix: string;
  lockSeconds?: number;
  stalledCheckSeconds?: number;
  maxStalls?: number;
  /** Model folder names this host has (the same tiny model under each name); ['tiny'] unless told. */
  models?: string[];
  /** The host's engine.memoryBudgetMB (one tiny model here takes about 5 MB); the default unless told. */
  memoryBudgetMB?: number;
}

/** A tiny model folder and a worker config file under root; returns the config file's path. */
export async function prepareWorkerHost(root: string, queue: ClusterQueueSettings): Promise<string> {
  const models = path.join(root, 'models');
  await mkdir(models, { recursive: true });
  const names = queue.models ?? ['tiny'];
  // A heavier tiny UNet: about 12 ms a step on one CPU thread, so a kill lands mid-job.
  await writeTinyModel(path.join(models, names[0]!), {
    generation: 'optimum-new',
    unet: 'smooth',
    unetBody: { channels: 128, layers: 6, attention: true },
    vaeEncoder: false,
  });
  for (const name of names.slice(1)) await cp(path.join(models, names[0]!), path.join(models, name), { recursive: true });
  const file = path.join(root, 'worker.jsonc');
  const config = {
    dataDir: path.join(root, 'worker-data'),
    logLevel: 'info',
    models: { dir: models, default: names[0] },
    engine: { providers: ['cpu'], threads: 1, warmup: false, previews: false, ...(queue.memoryBudgetMB !== undefined ? { memoryBudgetMB: queue.memoryBudgetMB } : {}) },
    queue: {
      backend: 'redis',
      redis: {
        url: queue.url,
        prefix: queue.prefix,
        // Short enough to recover a killed worker in seconds, long enough that a worker starved of
        // CPU by a parallel test run still renews its lock (renewal every half).
        lockSeconds: queue.lockSeconds ?? 6,
        stalledCheckSeconds: queue.stalledCheckSeconds ?? 1,
        maxStalls: queue.maxStalls ?? 20,
        resultTtlHours: 1,
        maxResultMegabytes: 16,
      },
    },
  };
  await writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

export interface WorkerProcess {
  child: ChildProcess;
  /** Resolves once the worker announced itself ready (its heartbeat is in Redis). */
  ready: Promise<void>;
  /** The worker's JSON log lines so far. */
  lines: string[];
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export function spawnWorker(configFile: string): WorkerProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/worker.ts')], {
    cwd: REPO,
    env: { ...process.env, BOT_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const ready = new Promise<void>((resolve, reject) => {
    let buffer = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const line of parts) {
        lines.push(line);
        if (line.includes('"engine worker ready"')) resolve();
      }
    });
    child.once('exit', (code, signal) => reject(new Error(`worker exited before it was ready (${signal ?? code}): ${stderr.slice(-1500)}`)));
  });
  ready.catch(() => undefined);
  return {
    child,
    ready,
    lines,
    kill: (signal = 'SIGKILL') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}

/** The bot's side of a cluster test: the Redis backend over a SQLite store in dir. */
export function clusterBotConfig(dir: string, url: string, prefix: string): Config {
  return defaultConfig({
    dataDir: dir,
    storage: { url: `sqlite://${path.join(dir, 'bot.sqlite')}` },
    engine: { previews: false },
    queue: {
      perMemberPending: 50,
      globalPending: 200,
      backend: 'redis',
      redis: { url, prefix, lockSeconds: 6, stalledCheckSeconds: 1, maxStalls: 20, resultTtlHours: 1, maxResultMegabytes: 16 },
    },
  });
}

/** A scripted engine that reports these model folders, as a real engine's scan would. */
export function withModels(engine: Engine, models: string[]): Engine {
  const scan: Engine['scanModels'] = async () => ({
    models: models.map((name) => modelInfo(name, { defaultSampler: 'Euler', defaultSteps: 20 })),
    problems: [],
  });
  return new Proxy(engine, {
    get(target, prop, receiver) {
      if (prop === 'scanModels') return scan;
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/**
 * An engine worker in this process (a scripted engine that has `models`, 'tiny' unless told),
 * with its own two connections; returns its stop.
 */
export async function startInProcessWorker(config: Config, engine: Engine, id: string, models = ['tiny']): Promise<() => Promise<void>> {
  const connection = openQueueConnection(config.queue.redis.url, 'worker');
  const subscriber = openQueueConnection(config.queue.redis.url, 'subscriber');
  const worker = await startEngineWorker({ config, engine: withModels(engine, models), log: pino({ level: 'silent' }), connection, subscriber, id });
  return async () => {
    await worker.close();
    connection.disconnect();
    subscriber.disconnect();
  };
}
