// Execution's seam: what draws a job. The local backend hands it to the in-process engine worker;
// the Redis backend to a remote engine worker through BullMQ (src/jobs/redis/dispatcher.ts).
import type { Engine, GenerateOptions, GenerateRequest, GenerateResult } from '../../engine/types.js';
import type { Job } from './types.js';

/** The abort reason of a bot stop: a remote worker keeps drawing, the bot re-attaches later. */
export const SHUTDOWN_REASON = 'the bot is restarting';

/** The drawing service cannot be reached: the job waits again, nothing counts against it. */
export class BackendUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendUnavailableError';
  }
}

export interface Drawer {
  draw(job: Job, request: GenerateRequest, options: GenerateOptions): Promise<GenerateResult>;
  /** The job's end is recorded in the store: whatever the drawer kept for it may go. */
  release?(job: Job): Promise<void>;
  /** False while jobs cannot be handed over (Redis unreachable); intake then says so. */
  available?(): boolean;
  /**
   * Which of the waiting jobs (fair order, head first) to start now; undefined: none yet. Absent:
   * always the head. The Redis backend routes by the engine workers' models.
   */
  choose?(candidates: Job[]): Job | undefined;
  /** Models the drawer holds in memory (the local engine): among equals in fair order their jobs go first. */
  loadedModels?(): readonly string[];
  /** After the runner stopped: closes connections. */
  close?(): Promise<void>;
}

export function localDrawer(engine: Engine): Drawer {
  return {
    draw: (_job, request, options) => engine.generate(request, options),
    loadedModels: () => engine.loadedModels?.() ?? [],
  };
}
