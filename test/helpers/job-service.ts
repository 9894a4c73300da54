// A job service on a fresh SQLite store in a temporary folder, over a scripted engine: for run-loop
// tests that need the real intake, schedule and runner but no model.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { Engine } from '../../engine/types.js';
import { defaultConfig } from '../../src/config/load.js';
import { createJobService, type JobServiceWithMaintenance } from '../../src/jobs/service.js';
import type { JobEvent, JobSpec, Store, SubmitInput } from '../../src/jobs/types.js';
import { createStore } from '../../src/store/index.js';

export interface ServiceUnderTest {
  jobs: JobServiceWithMaintenance;
  store: Store;
  events: JobEvent[];
  dataDir: string;
  close(): Promise<void>;
}

/** `wrapStore` may replace the store's methods (to hold a write, say) before the service uses it. */
export async function startJobService(engine: Engine, wrapStore?: (store: Store) => void): Promise<ServiceUnderTest> {
  const root = await mkdtemp(path.join(tmpdir(), 'job-service-'));
  const dataDir = path.join(root, 'data');
  const config = defaultConfig({
    dataDir,
    storage: { url: `sqlite://${path.join(dataDir, 'bot.sqlite')}` },
    engine: { previews: false },
    queue: { perMemberPending: 5, globalPending: 50 },
  });
  const store = await createStore(config);
  wrapStore?.(store);
  const jobs = createJobService({ config, store, engine, log: pino({ level: 'silent' }) });
  const events: JobEvent[] = [];
  jobs.on((e) => events.push(e));
  await jobs.start();
  return {
    jobs,
    store,
    events,
    dataDir,
    async close() {
      await jobs.stop(0);
      await store.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** An imagine request of `spec` (a small 64×64 one-picture job unless overridden) from a Discord member. */
export function imagineInput(prompt: string, userId: string, spec: Partial<JobSpec> = {}): SubmitInput {
  return {
    kind: 'imagine',
    spec: { prompt, negativePrompt: '', width: 64, height: 64, steps: 2, guidance: 7, sampler: 'Euler', seed: 1, count: 1, model: 'tiny', ...spec },
    requester: { platform: 'discord', userId, name: `user-${userId}`, roles: [] },
    target: { platform: 'discord', chatId: 'chan-1', handle: { interaction: 'i1' } },
    notes: [],
  };
}
