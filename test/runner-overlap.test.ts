// The run loop hands the engine the next job as soon as the previous one is drawn: its pictures
// are PNG-encoded and written while the next job's UNet runs. The finishing job stays "running"
// in the store until its files are written and recorded, and a stop waits for it.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../src/jobs/types.js';
import { ScriptedEngine } from './fixtures/durability-engine.js';
import { imagineInput, startJobService, type ServiceUnderTest } from './helpers/job-service.js';

let open: ServiceUnderTest | undefined;

afterEach(async () => {
  await open?.close();
  open = undefined;
});

describe('drawing overlaps the previous job’s encoding', () => {
  it('starts the next job before the previous one is recorded done, and a stop waits for that record', async () => {
    // The store write that records "first" as done waits for `openGate`: the first job is then
    // between "drawn" and "done" for as long as the test wants.
    let openGate: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      openGate = resolve;
    });
    let doneWriteHeld = false;
    const engine = new ScriptedEngine({ hold: true });
    const service = await startJobService(engine, (store) => {
      const put = store.jobs.put.bind(store.jobs);
      store.jobs.put = async (job: Job) => {
        if (job.spec.prompt === 'first' && job.status === 'done') {
          doneWriteHeld = true;
          await gate;
        }
        return put(job);
      };
    });
    open = service;
    const { jobs, store, events } = service;
    const first = await jobs.submit(imagineInput('first', 'A', { count: 4 }));
    const second = await jobs.submit(imagineInput('second', 'B'));
    if (!first.ok || !second.ok) throw new Error('submit refused');

    expect(await engine.release()).toBe('first');
    await engine.whenHeld(); // "second" is drawing…
    expect(engine.calls.map((c) => c.prompt)).toEqual(['first', 'second']);
    // …while "first" is not done yet: at most its files are being written.
    expect(events.some((e) => e.type === 'done')).toBe(false);
    expect((await store.jobs.get(first.job.id))?.status).toBe('running');

    // A stop now must not finish before the first job's result is recorded.
    let stopped = false;
    const stopping = jobs.stop(50).then(() => {
      stopped = true;
    });
    try {
      // The encode and file writes come first (slow on a loaded machine), then the held record.
      for (let i = 0; i < 600 && !doneWriteHeld; i++) await new Promise((r) => setTimeout(r, 50));
      expect(doneWriteHeld).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(stopped).toBe(false);
    } finally {
      openGate(); // never leave the stop (and the test's cleanup) waiting
    }
    await stopping;

    const firstAfter = await store.jobs.get(first.job.id);
    expect(firstAfter?.status).toBe('done');
    const files = [...(firstAfter?.result?.images.map((i) => i.file) ?? []), firstAfter?.result?.grid ?? ''];
    expect(files).toHaveLength(5);
    for (const file of files) expect(existsSync(path.join(service.dataDir, file))).toBe(true);
    // The job drawing when the bot stopped waits again for the restart, nothing lost or doubled.
    expect((await store.jobs.get(second.job.id))?.status).toBe('queued');
    expect(events.filter((e) => e.type === 'done').map((e) => e.job.spec.prompt)).toEqual(['first']);
  });
});
