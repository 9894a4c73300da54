// createEngine: the Engine the bot uses. Every onnxruntime session lives in a worker thread
// (engine/worker.ts) because session.run() blocks the thread that calls it; this side only
// posts requests and relays progress, so the bot's event loop stays responsive.
import type { Worker } from 'node:worker_threads';
import type { PipelineStats } from './pipeline.js';
import { scanModels } from './registry.js';
import { startEngineThread } from './thread.js';
import {
  EngineError,
  type Engine,
  type EngineOptions,
  type ExecutionProviderName,
  type GenerateOptions,
  type GenerateRequest,
  type GenerateResult,
  type ModelScan,
  type ModelStage,
  type StepProgress,
} from './types.js';
import type { FromWorker, ToWorker, WorkerInit } from './worker.js';

export { EngineError } from './types.js';
export { DEMO_MODELS_DIR, DEMO_MODEL_NOTICE } from './registry.js';
export type * from './types.js';

/** Extra knobs beyond the shared EngineOptions contract (benchmarks, GPU batching). */
export interface WorkerEngineOptions extends EngineOptions {
  /** Pictures of one job per UNet call; see PipelineOptions.imagesPerBatch. */
  imagesPerBatch?: number;
  /** Time every onnxruntime session.run in the worker (bench/engine.ts); off in the bot. */
  profileSessions?: boolean;
}

/** The Engine plus what the benchmark and tests need to look inside. */
export interface WorkerEngine extends Engine {
  /** Step-time counters from the worker (starts the worker if needed). */
  stats(): Promise<PipelineStats>;
  /** Kill the worker as a crash would; the in-flight call fails and the next call restarts it. */
  terminateWorkerForTest(): Promise<void>;
}

interface InFlight {
  id: number;
  resolve: (result: GenerateResult) => void;
  reject: (err: Error) => void;
  onStep: ((progress: StepProgress) => void) | undefined;
  onStage: ((stage: ModelStage) => void) | undefined;
}

// A CPU UNet step of a real model can take several seconds, and terminating a worker inside a
// native onnxruntime run can take the process down: wait for the step to end first.
const CLOSE_GRACE_MS = 30_000;

export function createEngine(options: WorkerEngineOptions): WorkerEngine {
  let worker: Worker | undefined;
  let current: InFlight | undefined;
  let statsWaiters = new Map<number, (stats: PipelineStats) => void>();
  let provider: ExecutionProviderName | undefined;
  let loaded: readonly string[] = [];
  let nextId = 1;
  let closed = false;
  // Calls run one at a time in arrival order: the worker draws one job at a time anyway, and a
  // strict chain keeps one job's progress messages from interleaving with another's.
  let chain: Promise<unknown> = Promise.resolve();

  const scanOptions = options.fallbackModelsDir !== undefined ? { fallbackDir: options.fallbackModelsDir } : {};
  const init: WorkerInit = {
    modelsDir: options.modelsDir,
    ...(options.fallbackModelsDir !== undefined ? { fallbackModelsDir: options.fallbackModelsDir } : {}),
    ...(options.modelCacheDir !== undefined ? { modelCacheDir: options.modelCacheDir } : {}),
    ...(options.tokenizerDir !== undefined ? { tokenizerDir: options.tokenizerDir } : {}),
    ...(options.loraCacheMB !== undefined ? { loraCacheMB: options.loraCacheMB } : {}),
    providers: options.providers,
    ...(options.threads !== undefined ? { threads: options.threads } : {}),
    ...(options.warmup !== undefined ? { warmup: options.warmup } : {}),
    ...(options.warmupOnCpu !== undefined ? { warmupOnCpu: options.warmupOnCpu } : {}),
    ...(options.warmupImages !== undefined ? { warmupImages: options.warmupImages } : {}),
    ...(options.imagesPerBatch !== undefined ? { imagesPerBatch: options.imagesPerBatch } : {}),
    ...(options.maxPromptChunks !== undefined ? { maxPromptChunks: options.maxPromptChunks } : {}),
    ...(options.profileSessions ? { profileSessions: true } : {}),
    ...(options.memoryBudgetMB !== undefined ? { memoryBudgetMB: options.memoryBudgetMB } : {}),
    ...(options.memory !== undefined ? { memory: options.memory } : {}),
    ...(options.optimizedCacheDir !== undefined ? { optimizedCacheDir: options.optimizedCacheDir } : {}),
  };

  function failInFlight(err: EngineError): void {
    const flight = current;
    current = undefined;
    flight?.reject(err);
    for (const waiter of statsWaiters.values()) waiter({ generations: 0, steps: 0, stepMs: 0, unetMs: 0, ortMs: 0, noiseWaitMs: 0 });
    statsWaiters = new Map();
  }

  function spawn(): Worker {
    if (worker) return worker;
    const w = startWorkerThread(init);
    w.on('message', (message: FromWorker) => onMessage(message));
    w.on('error', (err: Error) => {
      if (worker !== w) return;
      worker = undefined;
      loaded = [];
      failInFlight(new EngineError('worker_crashed', `the engine worker crashed: ${err.message}`));
    });
    w.on('exit', (code) => {
      if (worker !== w) return;
      worker = undefined;
      loaded = [];
      failInFlight(new EngineError('worker_crashed', `the engine worker stopped unexpectedly (exit code ${code})`));
    });
    worker = w;
    return w;
  }

  /** A faulty progress listener must not break the job; report it and carry on. */
  function listen(call: () => void, what: string): void {
    try {
      call();
    } catch (err) {
      options.log?.warn({ err: String(err) }, `engine ${what} listener threw`);
    }
  }

  function onMessage(message: FromWorker): void {
    switch (message.type) {
      case 'step':
        if (current?.id === message.id) listen(() => current?.onStep?.(message.progress), 'progress');
        break;
      case 'stage':
        if (current?.id === message.id) listen(() => current?.onStage?.(message.stage), 'stage');
        break;
      case 'result':
        if (current?.id === message.id) {
          const flight = current;
          current = undefined;
          flight.resolve(message.result);
        }
        break;
      case 'error':
        if (current?.id === message.id) {
          const flight = current;
          current = undefined;
          flight.reject(new EngineError(message.code, message.message));
        }
        break;
      case 'stats': {
        const waiter = statsWaiters.get(message.id);
        statsWaiters.delete(message.id);
        waiter?.(message.stats);
        break;
      }
      case 'provider':
        provider = message.provider;
        break;
      case 'loaded':
        loaded = message.models;
        break;
      case 'log':
        options.log?.[message.level](message.obj, message.msg);
        break;
      case 'closed':
        break;
    }
  }

  function post(message: ToWorker): void {
    spawn().postMessage(message);
  }

  async function runOne(request: GenerateRequest, opts: GenerateOptions): Promise<GenerateResult> {
    const signal = opts.signal;
    if (closed) throw new EngineError('internal', 'the engine has been closed');
    if (signal?.aborted) throw new EngineError('cancelled', 'cancelled');
    const id = nextId++;
    return new Promise<GenerateResult>((resolve, reject) => {
      const onAbort = (): void => {
        if (current?.id === id && worker) worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
      };
      const cleanup = (): void => signal?.removeEventListener('abort', onAbort);
      current = {
        id,
        resolve: (result) => {
          cleanup();
          resolve(result);
        },
        reject: (err) => {
          cleanup();
          reject(err);
        },
        onStep: opts.onStep,
        onStage: opts.onStage,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        post({ type: 'generate', id, request, wantsSteps: opts.onStep !== undefined, wantsStages: opts.onStage !== undefined });
      } catch (err) {
        // A request that cannot be cloned (a function, a detached buffer) never reaches the worker.
        current = undefined;
        cleanup();
        reject(new EngineError('bad_request', `the request could not be sent to the engine: ${(err as Error).message}`));
      }
    });
  }

  return {
    scanModels(): Promise<ModelScan> {
      // Cheap and session-free, so it runs here rather than waiting behind a generation.
      return scanModels(options.modelsDir, scanOptions);
    },
    provider(): ExecutionProviderName | undefined {
      return provider;
    },
    loadedModels(): readonly string[] {
      return loaded;
    },
    generate(request: GenerateRequest, opts: GenerateOptions = {}): Promise<GenerateResult> {
      const result = chain.then(() => runOne(request, opts));
      chain = result.catch(() => undefined);
      return result;
    },
    stats(): Promise<PipelineStats> {
      const id = nextId++;
      return new Promise((resolve) => {
        statsWaiters.set(id, resolve);
        post({ type: 'stats', id });
      });
    },
    async terminateWorkerForTest(): Promise<void> {
      const w = worker;
      if (!w) return;
      // Worker.terminate() during a native onnxruntime run can take the whole process down, so
      // the simulated crash happens in the worker between steps.
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ type: 'crash-for-test' } satisfies ToWorker);
      await exited;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const w = worker;
      if (!w) return;
      worker = undefined;
      failInFlight(new EngineError('cancelled', 'the engine was shut down'));
      // Let the worker release its sessions cleanly; terminate if it does not answer in time.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => void w.terminate().then(() => resolve()), CLOSE_GRACE_MS);
        w.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        try {
          w.postMessage({ type: 'close' } satisfies ToWorker);
        } catch {
          void w.terminate();
        }
      });
    },
  };
}

function startWorkerThread(init: WorkerInit): Worker {
  return startEngineThread('worker', init);
}
