// Everything between the adapters and the GPU, composed once: store → engine worker → job
// service → command context. src/main.ts adds the adapters and signals; tests add fakes.
import path from 'node:path';
import type { Logger } from 'pino';
import { ChatNotice } from '../commands/chat-notice.js';
import type { CommandContext } from '../commands/types.js';
import { createEngine, DEMO_MODELS_DIR } from '../engine/index.js';
import type { Engine, ModelScan } from '../engine/types.js';
import type { Config } from './config/schema.js';
import { createQueueBackend } from './jobs/backend.js';
import type { JobService, Store } from './jobs/types.js';
import { createStore } from './store/index.js';

export interface Core {
  store: Store;
  engine: Engine;
  jobs: JobService;
  commands: CommandContext;
  /** The latest model scan (members see these names). */
  scan(): ModelScan;
  /** Scan the models directory again; returns true when the set of usable models changed. */
  rescan(): Promise<boolean>;
  /** Stop the job service (grace period for the running job), then the engine and the store. */
  close(graceMs: number): Promise<void>;
}

function names(scan: ModelScan): string {
  return scan.models.map((m) => m.name).join('\n');
}

/** The engine this host's config describes (the bot's own, or a remote worker's). */
export function createConfiguredEngine(config: Config, log: Logger): Engine {
  return createEngine({
    modelsDir: config.models.dir,
    // A fresh clone with no models/ still draws: the bundled demo model (scan.notice says so).
    fallbackModelsDir: DEMO_MODELS_DIR,
    // Checkpoints are built into ONNX folders on first use; they are kept with the bot's data.
    modelCacheDir: path.join(config.dataDir, 'model-cache'),
    providers: [...config.engine.providers],
    threads: config.engine.threads,
    warmup: config.engine.warmup,
    memoryBudgetMB: config.engine.memoryBudgetMB,
    memory: config.engine.memory,
    // Optimised graphs kept between starts: a full-size UNet's optimisation costs seconds each time.
    optimizedCacheDir: path.join(config.dataDir, 'onnx-optimized'),
    // Warm the shapes the default job uses (its picture count), not a single picture.
    warmupImages: config.defaults.images,
    maxPromptChunks: config.limits.maxPromptChunks,
    log: { info: (o, m) => log.info(o, m), warn: (o, m) => log.warn(o, m) },
  });
}

export async function createCore(config: Config, log: Logger): Promise<Core> {
  const store = await createStore(config, log);
  const engine = createConfiguredEngine(config, log);
  let scan = await engine.scanModels();
  // Said once (and again only if the models change): members will see tiny emoji pictures.
  const sayNotice = (): void => {
    if (scan.notice) log.warn({ models: scan.models.map((m) => m.name), dir: config.models.dir }, scan.notice);
  };
  sayNotice();
  const jobs = await createQueueBackend({ config, store, engine, log });
  const commands: CommandContext = {
    config,
    jobs,
    settings: store.settings,
    models: () => scan.models,
    modelNotice: () => scan.notice,
    chatNotice: new ChatNotice(() => scan.notice),
    log,
  };

  let closed = false;
  return {
    store,
    engine,
    jobs,
    commands,
    scan: () => scan,
    rescan: async () => {
      const next = await engine.scanModels();
      const changed = names(next) !== names(scan);
      scan = next;
      if (changed) sayNotice();
      return changed;
    },
    close: async (graceMs) => {
      if (closed) return;
      closed = true;
      await jobs.stop(graceMs);
      await engine.close();
      await store.close();
    },
  };
}
