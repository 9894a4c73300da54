// The Telegram adapter end to end: the real grammY client under @grammyjs/runner talks to a
// fake Bot API on loopback, and the real engine draws on the tiny fixture model. Every
// scenario asserts what Telegram would have received.
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { readTextChunks } from '../engine/png.js';
import { startTelegram } from '../src/adapters/telegram/index.js';
import { PLACEHOLDER_TEXT } from '../src/adapters/telegram/updates.js';
import type { AdapterHandle } from '../src/adapters/types.js';
import type { Job } from '../src/jobs/types.js';
import { ERRORS, FakeBotApi, type JsonObject, type RecordedCall, type TgChat, type TgMessage, type TgUser } from './fakes/telegram/server.js';
import { createHarness, type Harness, type HarnessOptions } from './helpers/harness.js';

const JOB_MS = 90_000;

interface World {
  fake: FakeBotApi;
  harness: Harness;
  adapter: AdapterHandle;
}

let world: World | undefined;

afterEach(async () => {
  if (!world) return;
  const { fake, harness, adapter } = world;
  world = undefined;
  await adapter.stop();
  await harness.close();
  await fake.close();
});

async function startAdapter(fake: FakeBotApi, harness: Harness): Promise<AdapterHandle> {
  const adapter = await startTelegram({
    config: harness.config,
    jobs: harness.jobs,
    commands: harness.commands,
    log: harness.log,
    token: fake.token,
  });
  await fake.pollWaiting();
  return adapter;
}

async function setup(options: HarnessOptions = {}): Promise<World> {
  const fake = await FakeBotApi.start();
  const harness = await createHarness({
    ...options,
    config: {
      ...options.config,
      // Short edit pacing keeps the suite fast; pacing itself is checked in its own scenario.
      telegram: { apiRoot: fake.apiRoot, privateEditMs: 250, groupEditMs: 250, ...options.config?.telegram },
    },
  });
  const adapter = await startAdapter(fake, harness);
  world = { fake, harness, adapter };
  return world;
}

const chatOf = (call: RecordedCall) => Number(call.params.chat_id);
const replyToOf = (call: RecordedCall) => Number((call.params.reply_parameters as JsonObject | undefined)?.message_id);
const keyboardOf = (call: RecordedCall) =>
  ((call.params.reply_markup as JsonObject | undefined)?.inline_keyboard ?? []) as { text: string; callback_data: string }[][];
const buttonData = (call: RecordedCall, label: string): string => {
  const button = keyboardOf(call)
    .flat()
    .find((b) => b.text === label);
  if (!button) throw new Error(`no ${label} button`);
  return button.callback_data;
};

/** The photo answering a given message (the member's request or the result a button was pressed on). */
function photoReplyingTo(fake: FakeBotApi, chatId: number, messageId: number): Promise<RecordedCall> {
  return fake.waitFor(
    (c) => c.method === 'sendPhoto' && c.status === 200 && chatOf(c) === chatId && replyToOf(c) === messageId,
    JOB_MS,
    `a photo replying to message ${messageId}`,
  );
}

function placeholderFor(fake: FakeBotApi, chatId: number, messageId: number): Promise<RecordedCall> {
  return fake.waitFor(
    (c) => c.method === 'sendMessage' && c.status === 200 && chatOf(c) === chatId && replyToOf(c) === messageId && c.params.text === PLACEHOLDER_TEXT,
    20_000,
    `a status message replying to ${messageId}`,
  );
}

/** The job a result photo belongs to, once the adapter has marked it delivered (just after sending). */
async function jobOfResult(harness: Harness, chatId: number, photo: TgMessage): Promise<Job> {
  let job: Job | undefined;
  await expect
    .poll(async () => (job = await harness.jobs.findByMessage('telegram', String(chatId), String(photo.message_id))), { timeout: 10_000 })
    .toBeDefined();
  return job as Job;
}

async function privatePrompt(w: World, user: TgUser, text: string): Promise<{ request: TgMessage; photoCall: RecordedCall; photo: TgMessage; chat: TgChat }> {
  const chat = w.fake.privateChat(user);
  const request = w.fake.sendText(chat, user, text);
  const photoCall = await photoReplyingTo(w.fake, chat.id, request.message_id);
  return { request, photoCall, photo: w.fake.messageOf(photoCall), chat };
}

describe('Telegram adapter end to end (fake Bot API, real grammY, real engine)', () => {
  it('draws a private-chat prompt: status message, edits, chat action, photo with caption and keyboard', async () => {
    const w = await setup();
    const { fake, harness } = w;
    expect(fake.allowedUpdates[0]).toEqual(['message', 'callback_query', 'message_reaction']);
    const menu = fake.callsOf('setMyCommands')[0]?.params.commands as { command: string; description: string }[];
    expect(menu.map((c) => c.command)).toEqual(expect.arrayContaining(['imagine', 'settings', 'queue', 'cancel', 'help']));
    for (const c of menu) expect(c.command).toMatch(/^[a-z0-9_]{1,32}$/);

    const alice = fake.user(42, 'Alice', 'alice');
    const { request, photoCall, photo } = await privatePrompt(w, alice, 'a red fox in the snow --seed 7');

    const status = await placeholderFor(fake, 42, request.message_id);
    const statusId = fake.messageOf(status).message_id;
    const edits = fake.callsOf('editMessageText').filter((c) => Number(c.params.message_id) === statusId);
    expect(edits.length).toBeGreaterThan(0);
    // The queue was empty, so the job may already be drawing when the first edit goes out.
    for (const e of edits) expect(String(e.params.text)).toMatch(/^(Queued (#\d+|next up) · |Drawing…)/);
    expect(fake.callsOf('sendChatAction').some((c) => c.params.action === 'upload_photo' && chatOf(c) === 42)).toBe(true);

    // The result: caption within 1024, three rows of buttons with ≤ 64-byte data.
    const caption = String(photoCall.params.caption);
    expect(caption.length).toBeLessThanOrEqual(1024);
    expect(caption).toContain('a red fox in the snow');
    expect(caption).toContain('Seeds 7 · 8 · 9 · 10');
    const rows = keyboardOf(photoCall).map((row) => row.map((b) => b.text));
    expect(rows).toEqual([
      ['U1', 'U2', 'U3', 'U4'],
      ['V1', 'V2', 'V3', 'V4'],
      ['🔁', 'ℹ️', '🗑'],
    ]);
    for (const b of keyboardOf(photoCall).flat()) expect(Buffer.byteLength(b.callback_data)).toBeLessThanOrEqual(64);

    // The photo is the stored grid, as PNG or JPEG of the same size.
    const job = await jobOfResult(harness, 42, photo);
    const grid = await sharp(harness.jobs.filePath(job.result?.grid ?? '')).metadata();
    const sent = await sharp(photoCall.files.photo?.data).metadata();
    expect(['png', 'jpeg']).toContain(sent.format);
    expect([sent.width, sent.height]).toEqual([grid.width, grid.height]);
    expect(job.status).toBe('delivered');

    // The status message goes once the picture is up.
    await fake.waitFor((c) => c.method === 'deleteMessage' && Number(c.params.message_id) === statusId, 10_000, 'status deletion');
  });
});
