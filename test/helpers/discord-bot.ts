// The Discord bot booted for end-to-end tests: the real adapter and discord.js client against
// the fake Discord, the real core on the tiny model; plus helpers to read what the fake saw.
import sharp from 'sharp';
import { expect } from 'vitest';
import type { Action } from '../../commands/types.js';
import { decodeAction } from '../../commands/codec.js';
import { startDiscord } from '../../src/adapters/discord/index.js';
import type { AdapterHandle } from '../../src/adapters/types.js';
import type { DeepPartial } from '../../src/config/load.js';
import type { FileConfig } from '../../src/config/schema.js';
import { startFakeDiscord, type DispatchedInteraction, type FakeDiscord, type FakeDiscordOptions, type RecordedRequest } from '../fakes/discord/index.js';
import { createHarness, type Harness, type HarnessOptions } from './harness.js';

export const CALLBACK = 'POST /interactions/:id/:token/callback';
export const EDIT_ORIGINAL = 'PATCH /webhooks/:app/:token/messages/:message';
export const FOLLOW_UP = 'POST /webhooks/:app/:token';
export const DELETE_ORIGINAL = 'DELETE /webhooks/:app/:token/messages/:message';
export const CHANNEL_POST = 'POST /channels/:channel/messages';
export const CHANNEL_EDIT = 'PATCH /channels/:channel/messages/:message';
export const CHANNEL_DELETE = 'DELETE /channels/:channel/messages/:message';

export interface Bot {
  h: Harness;
  fake: FakeDiscord;
  adapter: AdapterHandle;
}

let booted: { h?: Harness; fake?: FakeDiscord; adapter?: AdapterHandle }[] = [];

/** Stops every bot booted so far (call it in afterEach). */
export async function stopBooted(): Promise<void> {
  for (const b of booted.reverse()) {
    await b.adapter?.stop().catch(() => undefined);
    await b.h?.close().catch(() => undefined);
    await b.fake?.close().catch(() => undefined);
  }
  booted = [];
}

/** Replaces a bot's adapter (one started by hand after a stop), so stopBooted stops it. */
export function adopt(h: Harness, adapter: AdapterHandle): void {
  const entry = booted.find((b) => b.h === h);
  if (entry) entry.adapter = adapter;
}

export async function boot(config: DeepPartial<FileConfig> = {}, fakeOptions: FakeDiscordOptions = {}, harness: Omit<HarnessOptions, 'config'> = {}): Promise<Bot> {
  const entry: (typeof booted)[number] = {};
  booted.push(entry);
  const fake = await startFakeDiscord({ heartbeatIntervalMs: 1000, ...fakeOptions });
  entry.fake = fake;
  const discord = { apiUrl: fake.apiUrl, progressEditMs: 250, ...(config.discord ?? {}) };
  const h = await createHarness({ ...harness, config: { ...config, discord } });
  entry.h = h;
  const adapter = await startDiscord({ config: h.config, jobs: h.jobs, commands: h.commands, log: h.log, token: fake.token });
  entry.adapter = adapter;
  return { h, fake, adapter };
}

/** Another adapter (a restarted bot) on a fresh harness over the same data and the same fake. */
export async function restart(bot: Bot): Promise<Bot> {
  await bot.adapter.stop();
  const h = await bot.h.restart();
  const entry = booted.find((b) => b.h === bot.h)!;
  entry.h = h;
  entry.adapter = undefined;
  const adapter = await startDiscord({ config: h.config, jobs: h.jobs, commands: h.commands, log: h.log, token: bot.fake.token });
  entry.adapter = adapter;
  return { h, fake: bot.fake, adapter };
}

export const forToken = (token: string) => (r: RecordedRequest) => r.params.token === token;
export const withFile = (r: RecordedRequest) => r.files.length > 0;

/** A result: a new message with a picture and buttons (the U picture sent ahead has no buttons). */
export const isResult = (r: RecordedRequest) =>
  r.status === 200 && withFile(r) && Array.isArray(r.body?.components) && (r.body.components as unknown[]).length > 0;

export function resultPost(fake: FakeDiscord, i: DispatchedInteraction): Promise<RecordedRequest> {
  return fake.waitForRequest((r) => r.route === FOLLOW_UP && forToken(i.token)(r) && isResult(r), 60_000, `the result of ${i.id}`);
}

export interface Button {
  custom_id: string;
  label: string;
}

export function rowsOf(r: RecordedRequest): Button[][] {
  const rows = (r.body?.components ?? []) as { components: Button[] }[];
  return rows.map((row) => row.components);
}

export function actionsOf(r: RecordedRequest): Action[] {
  return rowsOf(r)
    .flat()
    .map((b) => decodeAction(b.custom_id)!);
}

export function button(r: RecordedRequest, label: string): string {
  const b = rowsOf(r)
    .flat()
    .find((x) => x.label === label);
  if (!b) throw new Error(`no button ${label} in ${JSON.stringify(rowsOf(r))}`);
  return b.custom_id;
}

export async function parametersOf(png: Buffer): Promise<string> {
  const meta = await sharp(png).metadata();
  expect(meta.format).toBe('png');
  return meta.comments?.find((c) => c.keyword === 'parameters')?.text ?? '';
}

/** Polls until the check passes: the fake records a request before the bot has its answer. */
export async function eventually<T>(check: () => Promise<T | undefined>, what: string): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The job delivered as this message, once the adapter has recorded the delivery. */
export function deliveredAs(h: Harness, channelId: string, messageId: string) {
  return eventually(async () => {
    const job = await h.jobs.findByMessage('discord', channelId, messageId);
    return job?.status === 'delivered' ? job : undefined;
  }, `the job delivered as ${messageId}`);
}

/** The result message a finished slash command posted (a follow-up of its interaction). */
export function resultMessageId(fake: FakeDiscord, i: DispatchedInteraction): string {
  const post = fake.requests.find((r) => r.route === FOLLOW_UP && forToken(i.token)(r) && isResult(r));
  if (!post) throw new Error('no result message');
  return (post.response as { id: string }).id;
}

/** The interaction's own reply: the status message while the job waits and draws. */
export function statusMessageId(fake: FakeDiscord, i: DispatchedInteraction): string {
  const msg = fake.originalMessage(i.id);
  if (!msg) throw new Error('no original message');
  return msg.id;
}

