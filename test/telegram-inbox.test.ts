// The adapter's durable state on a real SQLite file: what a killed process left is there for the
// next one (a second connection stands in for the next process).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { openAdapterState, type AdapterState } from '../src/store/adapter-state.js';

let root: string | undefined;
const open: AdapterState<{ text: string }>[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  if (root) await rm(root, { recursive: true, force: true });
  root = undefined;
});

async function openState(dir: string): Promise<AdapterState<{ text: string }>> {
  const config = defaultConfig({ dataDir: dir, storage: { url: `sqlite://${path.join(dir, 'bot.sqlite')}` } });
  const state = await openAdapterState<{ text: string }>(config, 'telegram');
  open.push(state);
  return state;
}

describe('adapter state (Telegram inbox)', () => {
  it('keeps stored updates, their status message ids and done marks for the next process, and prunes only confirmed handled ones', async () => {
    root = await mkdtemp(path.join(tmpdir(), 'tg-inbox-'));
    const first = await openState(root);
    await first.add([
      { id: 10, payload: { text: 'a' } },
      { id: 11, payload: { text: 'b' } },
    ]);
    // A re-sent copy does not replace or duplicate what is there.
    await first.add([
      { id: 11, payload: { text: 'changed' } },
      { id: 12, payload: { text: 'c' } },
    ]);
    await first.setPlaceholder(11, 5001);
    await first.markDone(10);
    await first.writeLease({ instance: 'old', since: 1, at: 2 });
    await first.setNote('job1:sent', ['42', '7']);

    const next = await openState(root);
    const entries = await next.entries();
    expect(entries.map((e) => [e.id, e.payload.text, e.done ?? false, e.placeholder])).toEqual([
      [10, 'a', true, undefined],
      [11, 'b', false, 5001],
      [12, 'c', false, undefined],
    ]);
    expect(await next.readLease()).toEqual({ instance: 'old', since: 1, at: 2 });
    expect(await next.getNote('job1:sent')).toEqual(['42', '7']);

    // Only handled entries below the confirmed offset go.
    await next.markDone(12);
    await next.prune(12);
    expect((await next.entries()).map((e) => e.id)).toEqual([11, 12]);
    await next.deleteNote('job1:sent');
    expect(await next.getNote('job1:sent')).toBeUndefined();
  });
});
