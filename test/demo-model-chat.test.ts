// The demo model through the chat platforms and the web studio: a fresh clone (no models/ folder)
// answering a Discord /imagine, a Telegram message and a studio request with pictures whose colour
// follows the prompt, via the real discord.js / grammY clients against the loopback fakes and the
// studio's own HTTP API.
import { afterEach, describe, expect, it } from 'vitest';
import { startDiscord } from '../src/adapters/discord/index.js';
import { startTelegram } from '../src/adapters/telegram/index.js';
import { DEMO_MODEL_NOTICE } from '../engine/registry.js';
import type { AdapterHandle } from '../src/adapters/types.js';
import { startFakeDiscord, type FakeDiscord } from './fakes/discord/index.js';
import { FOLLOW_UP } from './helpers/discord-bot.js';
import { FakeBotApi } from './fakes/telegram/server.js';
import { redOverGreen, rgbOf } from './helpers/demo-model.js';
import { createHarness, waitForJobEvent, type Harness } from './helpers/harness.js';
import { bootStudio } from './helpers/web.js';

const DRAW = { steps: 20, sampler: 'DPM++ 2M Karras' as const, guidance: 7 };
const JOB_MS = 90_000;

/** Torn down after each test, last started first. */
let running: { stop(): Promise<unknown> }[] = [];

afterEach(async () => {
  for (const r of running.reverse()) await r.stop().catch(() => undefined);
  running = [];
});

async function freshClone(config: Parameters<typeof createHarness>[0] = {}): Promise<Harness> {
  const h = await createHarness({ withoutModels: true, ...config, config: { defaults: DRAW, ...config.config } });
  running.push({ stop: () => h.close() });
  return h;
}

function track(adapter: AdapterHandle): AdapterHandle {
  running.push({ stop: () => adapter.stop() });
  return adapter;
}

describe('demo model in the chats (fresh clone, no models/)', () => {
  it('Discord: /imagine "green apple" comes back as a grid more green than red, and says once that it is the demo model', async () => {
    const fake: FakeDiscord = await startFakeDiscord({ heartbeatIntervalMs: 1000 });
    running.push({ stop: () => fake.close() });
    const h = await freshClone({ config: { discord: { apiUrl: fake.apiUrl, progressEditMs: 250 } } });
    track(await startDiscord({ config: h.config, jobs: h.jobs, commands: h.commands, log: h.log, token: fake.token }));

    const i = fake.slashCommand('imagine', { prompt: 'green apple', seed: 100 });
    const result = await fake.waitForRequest(
      // Results come as a new follow-up message that mentions the member.
      (r) => r.route === FOLLOW_UP && r.params.token === i.token && r.files.length > 0,
      JOB_MS,
      'the result grid',
    );
    expect(redOverGreen(await rgbOf(result.files[0]!.data))).toBeLessThan(0);
    // The channel is told once why the pictures are tiny emoji: on this first result, not the next.
    expect(String(result.body?.content)).toContain(DEMO_MODEL_NOTICE);
    const again = fake.slashCommand('imagine', { prompt: 'red apple', seed: 101 });
    const second = await fake.waitForRequest(
      (r) => r.route === FOLLOW_UP && r.params.token === again.token && r.files.length > 0,
      JOB_MS,
      'the second result grid',
    );
    expect(String(second.body?.content)).not.toContain('demo model');
  });

  it('Telegram: a private "red apple" comes back as a grid more red than green, with the demo model notice', async () => {
    const fake = await FakeBotApi.start();
    running.push({ stop: async () => { fake.releaseAll(); await fake.close(); } });
    const h = await freshClone({ config: { telegram: { apiRoot: fake.apiRoot, privateEditMs: 250, groupEditMs: 250 } } });
    track(await startTelegram({ config: h.config, jobs: h.jobs, commands: h.commands, log: h.log, token: fake.token }));
    await fake.pollWaiting();

    const alice = fake.user(42, 'Alice', 'alice');
    const chat = fake.privateChat(alice);
    const request = fake.sendText(chat, alice, 'red apple --seed 100');
    const photo = await fake.waitFor(
      (c) =>
        c.method === 'sendPhoto' &&
        c.status === 200 &&
        Number(c.params.chat_id) === chat.id &&
        Number((c.params.reply_parameters as { message_id?: number } | undefined)?.message_id) === request.message_id,
      JOB_MS,
      'the result photo',
    );
    expect(String(photo.params.caption)).toContain('red apple');
    expect(redOverGreen(await rgbOf(photo.files.photo!.data))).toBeGreaterThan(0);
    // The result's details, sent after the photo, tell the chat it is the demo model.
    await fake.waitFor(
      (c) => c.method === 'sendMessage' && c.status === 200 && Number(c.params.chat_id) === chat.id && String(c.params.text).includes(DEMO_MODEL_NOTICE),
      JOB_MS,
      'the demo model notice',
    );
  });

  it('web studio: the page is told it is the demo model, and "red apple" comes back as a grid more red than green', async () => {
    const studio = await bootStudio({ withoutModels: true, config: { defaults: DRAW } });
    running.push({ stop: () => studio.close() });
    const { harness: h, web } = studio;

    // Loopback with no access configured: the page's first call opens a local session.
    const me = await fetch(`${web.url}/api/me`);
    const page = (await me.json()) as { notice: string | null; csrf: string; models: string[] };
    expect(page.notice).toBe(DEMO_MODEL_NOTICE);
    expect(page.models).toHaveLength(1);
    const cookie = (me.headers.get('set-cookie') ?? '').split(';')[0] ?? '';

    const answer = await fetch(`${web.url}/api/imagine`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: cookie, 'X-CSRF-Token': page.csrf },
      body: JSON.stringify({ prompt: 'red apple', options: { seed: 100 } }),
    });
    const queued = (await answer.json()) as { ok: boolean; job?: { id: string } };
    expect(queued.ok).toBe(true);
    const jobId = queued.job!.id;
    const done = waitForJobEvent(h, jobId, 'done');
    const status = (await h.jobs.get(jobId))?.status;
    if (status !== 'done' && status !== 'delivered') await done;
    const grid = await fetch(`${web.url}/img/${jobId}/grid`, { headers: { Cookie: cookie } });
    expect(grid.status).toBe(200);
    expect(redOverGreen(await rgbOf(Buffer.from(await grid.arrayBuffer())))).toBeGreaterThan(0);
  });
});
