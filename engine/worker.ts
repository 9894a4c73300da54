// The engine's worker thread. onnxruntime-node's run() is a synchronous native call on the
// thread that makes it, so every session lives here and the main thread only exchanges
// messages: requests in; step progress, previews and results out.
//
// The message types below are the whole protocol between this file and engine/index.ts
// (which imports them as types only, so importing them never starts a worker).
import { parentPort, workerData } from 'node:worker_threads';
import { Pipeline, type PipelineStats } from './pipeline.js';
import { timeSessionRuns } from './session-clock.js';
import {
  EngineError,
  type EngineErrorCode,
  type ExecutionProviderName,
  type GenerateRequest,
  type GenerateResult,
  type MemoryMode,
  type ModelStage,
  type StepProgress,
} from './types.js';

export interface WorkerInit {
  modelsDir: string;
  fallbackModelsDir?: string;
  modelCacheDir?: string;
  tokenizerDir?: string;
  loraCacheMB?: number;
  providers: ExecutionProviderName[];
  threads?: number;
  warmup?: boolean;
  warmupOnCpu?: boolean;
  warmupImages?: number;
  imagesPerBatch?: number;
  maxPromptChunks?: number;
  profileSessions?: boolean;
  memoryBudgetMB?: number;
  memory?: MemoryMode;
  optimizedCacheDir?: string;
}

export type ToWorker =
  | { type: 'generate'; id: number; request: GenerateRequest; wantsSteps: boolean; wantsStages?: boolean }
  | { type: 'cancel'; id: number }
  | { type: 'stats'; id: number }
  | { type: 'close' }
  /** Tests: end the thread the way a crash would, but between steps (never inside a native run). */
  | { type: 'crash-for-test' };

export type FromWorker =
  | { type: 'step'; id: number; progress: StepProgress }
  | { type: 'stage'; id: number; stage: ModelStage }
  | { type: 'result'; id: number; result: GenerateResult }
  | { type: 'error'; id: number; code: EngineErrorCode; message: string }
  | { type: 'stats'; id: number; stats: PipelineStats }
  | { type: 'provider'; provider: ExecutionProviderName }
  | { type: 'loaded'; models: string[] }
  | { type: 'log'; level: 'info' | 'warn'; obj: Record<string, unknown>; msg: string }
  | { type: 'closed' };

function startWorker(): void {
  const port = parentPort;
  if (!port) throw new Error('engine/worker.ts must be started as a worker thread (see engine/index.ts)');
  const send = (message: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);
  const init = workerData as WorkerInit;
  const sessionClock = init.profileSessions ? timeSessionRuns() : undefined;

  // WorkerInit holds the Pipeline's options as index.ts received them (only those given), plus
  // profileSessions, which becomes the session clock here.
  const { profileSessions: _profileSessions, ...pipelineOptions } = init;
  const pipeline = new Pipeline({
    ...pipelineOptions,
    ...(sessionClock ? { sessionClock } : {}),
    onLoadedModels: (models) => send({ type: 'loaded', models }),
    log: {
      info: (obj, msg) => send({ type: 'log', level: 'info', obj: cloneable(obj), msg }),
      warn: (obj, msg) => send({ type: 'log', level: 'warn', obj: cloneable(obj), msg }),
    },
  });

  const running = new Map<number, AbortController>();
  let lastProvider: ExecutionProviderName | undefined;

  async function generate(id: number, request: GenerateRequest, wantsSteps: boolean, wantsStages: boolean): Promise<void> {
    const controller = new AbortController();
    running.set(id, controller);
    try {
      const result = await pipeline.generate(request, {
        signal: controller.signal,
        ...(wantsSteps
          ? {
              onStep: (progress: StepProgress) =>
                send({ type: 'step', id, progress }, progress.preview ? [bufferOf(progress.preview.rgb)] : []),
            }
          : {}),
        ...(wantsStages ? { onStage: (stage: ModelStage) => send({ type: 'stage', id, stage }) } : {}),
      });
      const provider = pipeline.provider();
      if (provider && provider !== lastProvider) {
        lastProvider = provider;
        send({ type: 'provider', provider });
      }
      send({ type: 'result', id, result }, result.images.map((image) => bufferOf(image.rgb)));
    } catch (err) {
      const provider = pipeline.provider();
      if (provider && provider !== lastProvider) {
        lastProvider = provider;
        send({ type: 'provider', provider });
      }
      if (err instanceof EngineError) {
        send({ type: 'error', id, code: err.code, message: err.message });
      } else {
        const message = err instanceof Error ? err.message : String(err);
        send({ type: 'error', id, code: 'internal', message: `the engine failed: ${message}` });
      }
    } finally {
      running.delete(id);
    }
  }

  port.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'generate':
        void generate(message.id, message.request, message.wantsSteps, message.wantsStages ?? false);
        break;
      case 'cancel':
        running.get(message.id)?.abort();
        break;
      case 'stats':
        send({ type: 'stats', id: message.id, stats: pipeline.stats() });
        break;
      case 'crash-for-test':
        // In a worker thread process.exit() ends only this thread.
        process.exit(70);
        break;
      case 'close':
        for (const controller of running.values()) controller.abort();
        void pipeline
          .close()
          .catch(() => undefined)
          .then(() => {
            send({ type: 'closed' });
            port.close();
          });
        break;
    }
  });
}

/** An image's own ArrayBuffer, so it can be transferred instead of copied. */
function bufferOf(view: Uint8Array): ArrayBuffer {
  return view.buffer as ArrayBuffer;
}

/** Log fields may hold Errors or functions; keep what survives structured cloning. */
function cloneable(obj: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    if (value instanceof Error) out[key] = { name: value.name, message: value.message };
    else if (typeof value !== 'function' && typeof value !== 'symbol') out[key] = value;
  }
  return out;
}

startWorker();
