// Builds the whole bot core for end-to-end tests: a temp data dir, a tiny fixture model in
// the real ONNX layout, the SQLite store, the real engine (worker thread), the job service
// and the command context. Adapter tests add their platform on top.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import type { Engine, ModelInfo } from '../../engine/types.js';
import { defaultConfig, type DeepPartial } from '../../src/config/load.js';
import type { Config, FileConfig } from '../../src/config/schema.js';
import type { Core } from '../../src/core.js';
import type { JobEvent, JobService, Store } from '../../src/jobs/types.js';
import { createCore } from '../../src/core.js';
import { createLogger } from '../../src/logging.js';
import { writeTinyModel, type TinyModelOptions } from '../fixtures/tiny-models.js';

export interface HarnessOptions {
  config?: DeepPartial<FileConfig>;
  model?: Partial<TinyModelOptions>;
  /** A fresh clone: no models/ folder at all and no default model, so the bundled demo model is used. */
  withoutModels?: boolean;
  secrets?: Config['secrets'];
  /** Adds files to the models folder (beside the tiny ONNX model) before the bot starts. */
  prepareModels?: (modelsDir: string) => Promise<void>;
}

export interface Harness {
  config: Config;
  store: Store;
  engine: Engine;
  jobs: JobService;
  commands: Core['commands'];
  models: ModelInfo[];
  log: Logger;
  /** Every JSON log line written so far (for redaction and job-id assertions). */
  logLines: string[];
  root: string;
  dataDir: string;
  /** Simulates a bot restart: stops everything and starts it again on the same data directory. */
  restart(): Promise<Harness>;
  close(): Promise<void>;
}

export const TINY_MODEL = 'tiny';

function mergeOverrides(root: string, options: HarnessOptions): DeepPartial<FileConfig> {
  const base: DeepPartial<FileConfig> = {
    dataDir: path.join(root, 'data'),
    logLevel: 'debug',
    storage: { url: `sqlite://${path.join(root, 'data', 'bot.sqlite')}` },
    models: { dir: path.join(root, 'models'), default: TINY_MODEL },
    engine: { providers: ['cpu'], threads: 1, warmup: false, previews: false },
    defaults: { steps: 3, images: 4, sampler: 'Euler' },
  };
  const extra = options.config ?? {};
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(extra)) {
    const prior = out[key];
    out[key] =
      prior && typeof prior === 'object' && !Array.isArray(prior) && value && typeof value === 'object' && !Array.isArray(value)
        ? { ...prior, ...value }
        : value;
  }
  return out as DeepPartial<FileConfig>;
}

async function boot(root: string, options: HarnessOptions, logLines: string[]): Promise<Harness> {
  const fileConfig = defaultConfig(mergeOverrides(root, options));
  const config: Config = Object.freeze({ ...fileConfig, secrets: options.secrets ?? {} });
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logLines.push(line);
      done();
    },
  });
  const log = createLogger(config, sink);
  const core = await createCore(config, log);
  const { store, engine, jobs, commands } = core;
  await jobs.start();
  const close = () => core.close(0);
  return {
    config,
    store,
    engine,
    jobs,
    commands,
    models: core.scan().models,
    log,
    logLines,
    root,
    dataDir: config.dataDir,
    close,
    restart: async () => {
      await close();
      return boot(root, options, logLines);
    },
  };
}

export async function createHarness(options: HarnessOptions = {}): Promise<Harness> {
  const root = await mkdtemp(path.join(tmpdir(), 'imagine-harness-'));
  if (options.withoutModels) {
    const config = { ...options.config, models: { default: '', ...options.config?.models } };
    return withCleanup(await boot(root, { ...options, config }, []));
  }
  await mkdir(path.join(root, 'models'), { recursive: true });
  await writeTinyModel(path.join(root, 'models', TINY_MODEL), {
    generation: 'optimum-new',
    unet: 'oracle',
    vaeEncoder: true,
    ...options.model,
  } as TinyModelOptions);
  await options.prepareModels?.(path.join(root, 'models'));
  return withCleanup(await boot(root, options, []));
}

/** The temp folder goes when the last harness of a restart chain is closed. */
function withCleanup(harness: Harness): Harness {
  const { close, restart } = harness;
  harness.close = async () => {
    await close();
    await rm(harness.root, { recursive: true, force: true });
  };
  harness.restart = async () => withCleanup(await restart());
  return harness;
}

/** The next event of this type for this job. */
export function waitForJobEvent(h: Harness, jobId: string, type: JobEvent['type']): Promise<JobEvent> {
  return new Promise((resolve) => {
    const off = h.jobs.on((e) => {
      if (e.job.id === jobId && e.type === type) {
        off();
        resolve(e);
      }
    });
  });
}
