// The Telegram adapter end to end: the real grammY client (with the adapter's poll loop) talks to a
// fake Bot API on loopback, and the real engine draws on the tiny fixture model. Every
// scenario asserts what Telegram would have received.
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { readTextChunks } from '../engine/png.js';
import { startTelegram, type TelegramOptions } from '../src/adapters/telegram/index.js';
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
  /** Harnesses replaced by restart(), closed last (the first one owns the temp dir). */
  earlier: Harness[];
}

let world: World | undefined;

afterEach(async () => {
  if (!world) return;
  const { fake, harness, adapter, earlier } = world;
  world = undefined;
  fake.releaseAll();
  await adapter.stop();
  await harness.close();
  for (const h of earlier.reverse()) await h.close();
  await fake.close();
});

/** Stops the bot and the core, starts both again on the same data directory. */
async function restart(w: World): Promise<void> {
  await w.adapter.stop();
  w.earlier.push(w.harness);
  w.harness = await w.harness.restart();
  w.adapter = await startAdapter(w.fake, w.harness);
}

/** Backoffs short enough for a test; the logic is the production one. */
const FAST_POLLING: TelegramOptions = { polling: { conflictBaseMs: 50, conflictMaxMs: 200, errorRetryMs: 100 } };

async function startAdapter(fake: FakeBotApi, harness: Harness, onFatal?: (reason: string) => void): Promise<AdapterHandle> {
  const adapter = await startTelegram(
    { config: harness.config, jobs: harness.jobs, commands: harness.commands, log: harness.log, token: fake.token, ...(onFatal ? { onFatal } : {}) },
    FAST_POLLING,
  );
  await fake.pollWaiting();
  return adapter;
}

/** Prompts beyond 75 tokens are cut (and the cut reported in a details message). */
const ONE_CHUNK: HarnessOptions = { config: { limits: { maxPromptChunks: 1 } } };

async function setup(options: HarnessOptions = {}, onFatal?: (reason: string) => void): Promise<World> {
  const fake = await FakeBotApi.start();
  const harness = await createHarness({
    ...options,
    config: {
      ...options.config,
      // Short edit pacing keeps the suite fast; pacing itself is checked in its own scenario.
      telegram: { apiRoot: fake.apiRoot, privateEditMs: 250, groupEditMs: 250, ...options.config?.telegram },
    },
  });
  const adapter = await startAdapter(fake, harness, onFatal);
  world = { fake, harness, adapter, earlier: [] };
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

/** The next photo (after call `afterSeq`) answering a result message: a button's or reaction's job. */
function nextPhotoReplyingTo(fake: FakeBotApi, chatId: number, messageId: number, afterSeq: number): Promise<RecordedCall> {
  return fake.waitFor(
    (c) => c.seq > afterSeq && c.method === 'sendPhoto' && c.status === 200 && chatOf(c) === chatId && replyToOf(c) === messageId,
    JOB_MS,
    `a new photo replying to ${messageId}`,
  );
}

function answerOf(fake: FakeBotApi, callbackId: string): Promise<RecordedCall> {
  return fake.waitFor((c) => c.method === 'answerCallbackQuery' && c.params.callback_query_id === callbackId, 20_000, `the answer to ${callbackId}`);
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
    for (const e of edits) expect(String(e.params.text)).toMatch(/^(Queued (#\d+|next up) · |Loading model tiny…$|Drawing…|✅ Done\.$)/);
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

  it('takes /imagine, /imagine@botname and mentions in a group, and ignores plain text and other bots', async () => {
    const w = await setup();
    const { fake } = w;
    const bob = fake.user(7, 'Bob', 'bob');
    const group = fake.groupChat(-100500);
    const plain = fake.sendText(group, bob, 'a blue bird on a branch');
    const other = fake.sendText(group, bob, '/imagine@other_bot a blue bird');
    const slash = fake.sendText(group, bob, '/imagine a blue bird --seed 3');
    await photoReplyingTo(fake, group.id, slash.message_id);
    const addressed = fake.sendText(group, bob, '/imagine@club_imagine_bot a green frog');
    const mention = fake.sendText(group, bob, '@club_imagine_bot an orange cat --seed 11');
    const [addressedPhoto, mentionPhoto] = await Promise.all([
      photoReplyingTo(fake, group.id, addressed.message_id),
      photoReplyingTo(fake, group.id, mention.message_id),
    ]);
    expect(String(addressedPhoto.params.caption)).toContain('a green frog');
    // The mention itself is not part of the prompt.
    expect(String(mentionPhoto.params.caption)).toMatch(/^“an orange cat”/);
    await w.adapter.stop();
    const answered = new Set(fake.calls.map(replyToOf));
    expect(answered.has(plain.message_id)).toBe(false);
    expect(answered.has(other.message_id)).toBe(false);
  });

  it('serves every button: U sends the PNG with its parameters and a 2x job, V and 🔁 start jobs, ℹ️ tells, 🗑 deletes, garbage gets an alert', async () => {
    const w = await setup();
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const { photoCall, photo } = await privatePrompt(w, alice, 'a lighthouse at dusk --seed 21');
    const result = fake.messages.get(`42:${photo.message_id}`) as TgMessage;

    // U2: answered first, then the picture as a PNG document that keeps its parameters chunk.
    const up = fake.pressButton(alice, result, buttonData(photoCall, 'U2'));
    const upAnswer = await answerOf(fake, up);
    const doc = await fake.waitForMethod('sendDocument', (c) => replyToOf(c) === photo.message_id);
    expect(upAnswer.seq).toBeLessThan(doc.seq);
    const png = doc.files.document?.data ?? Buffer.alloc(0);
    expect((await sharp(png).metadata()).format).toBe('png');
    const parameters = readTextChunks(png).find((c) => c.keyword === 'parameters')?.text ?? '';
    expect(parameters).toContain('a lighthouse at dusk');
    expect(parameters).toContain('Seed: 22');
    const upPhoto = await nextPhotoReplyingTo(fake, 42, photo.message_id, upAnswer.seq);
    expect(String(upPhoto.params.caption)).toContain('2× upscale of picture 2');
    const upSize = await sharp(upPhoto.files.photo?.data).metadata();
    const original = await sharp(png).metadata();
    expect([upSize.width, upSize.height]).toEqual([(original.width ?? 0) * 2, (original.height ?? 0) * 2]);

    // V3 and 🔁: new jobs, each with its own status message and photo replying to the result.
    for (const label of ['V3', '🔁']) {
      const id = fake.pressButton(alice, result, buttonData(photoCall, label));
      const answer = await answerOf(fake, id);
      const status = await fake.waitFor(
        (c) => c.seq > answer.seq && c.method === 'sendMessage' && c.params.text === PLACEHOLDER_TEXT && replyToOf(c) === photo.message_id,
        20_000,
        `${label} status`,
      );
      expect(answer.seq).toBeLessThan(status.seq);
      const next = await nextPhotoReplyingTo(fake, 42, photo.message_id, answer.seq);
      if (label === 'V3') expect(String(next.params.caption)).toMatch(/variation seed/);
      else expect(String(next.params.caption)).not.toContain('Seeds 21 · 22');
    }

    // ℹ️: the info text as a message (a callback answer is too short for it).
    const infoId = fake.pressButton(alice, result, buttonData(photoCall, 'ℹ️'));
    const infoAnswer = await answerOf(fake, infoId);
    const info = await fake.waitFor((c) => c.seq > infoAnswer.seq && c.method === 'sendMessage' && replyToOf(c) === photo.message_id, 20_000, 'info');
    expect(String(info.params.text)).toContain('AUTOMATIC1111 parameters');
    expect(String(info.params.text)).toContain('Steps: 3');
    expect(String(info.params.text).length).toBeLessThanOrEqual(4096);

    // 🗑: the result message goes.
    const del = fake.pressButton(alice, result, buttonData(photoCall, '🗑'));
    await answerOf(fake, del);
    await fake.waitFor((c) => c.method === 'deleteMessage' && Number(c.params.message_id) === photo.message_id, 20_000, 'result deletion');

    // Well-formed data for a job that does not exist: the command's "expired" answer.
    const forged = fake.pressButton(alice, result, 'v1:rr:zzzzzzzz');
    await answerOf(fake, forged);
    await fake.waitFor(
      (c) => ['sendMessage', 'editMessageText'].includes(c.method) && /expired or was deleted/.test(String(c.params.text)),
      20_000,
      'the expired answer',
    );
    // Garbage: a short alert, and nothing else happens.
    const garbage = fake.pressButton(alice, result, 'hello there');
    const garbageAnswer = await answerOf(fake, garbage);
    expect(garbageAnswer.params).toMatchObject({ show_alert: true, text: expect.stringMatching(/no longer valid/) });
    const before = fake.calls.length;
    await w.adapter.stop();
    const after = fake.calls.slice(before).filter((c) => !['getUpdates', 'sendChatAction'].includes(c.method));
    expect(after).toEqual([]);
  });

  it('rerolls a result on a 🔁 reaction, and ignores other reactions and unknown messages', async () => {
    const w = await setup();
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const { photo, chat, request } = await privatePrompt(w, alice, 'a paper boat --seed 5');
    await jobOfResult(w.harness, 42, photo);
    fake.react(chat, photo.message_id, alice, ['👍']);
    fake.react(chat, request.message_id, alice, ['🔁']);
    const mark = fake.calls.length ? (fake.calls.at(-1)?.seq ?? 0) : 0;
    fake.react(chat, photo.message_id, alice, ['👍', '🔁'], ['👍']);
    const status = await placeholderFor(fake, 42, photo.message_id);
    expect(status.seq).toBeGreaterThan(mark);
    const rerolled = await nextPhotoReplyingTo(fake, 42, photo.message_id, mark);
    expect(String(rerolled.params.caption)).toContain('a paper boat');
    expect(String(rerolled.params.caption)).not.toContain('Seeds 5 · 6');
    // Exactly one new job: the 👍 and the reaction on the member's own message did nothing.
    expect(fake.callsOf('sendMessage').filter((c) => c.params.text === PLACEHOLDER_TEXT)).toHaveLength(2);
  });

  it('rerolls on a reaction the club configured (Telegram has no standard 🔁 reaction)', async () => {
    const w = await setup({ config: { telegram: { rerollReactions: ['🤔'] } } });
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const { photo, chat } = await privatePrompt(w, alice, 'a kite --seed 8');
    await jobOfResult(w.harness, 42, photo);
    const mark = fake.calls.at(-1)?.seq ?? 0;
    fake.react(chat, photo.message_id, alice, ['🤔']);
    const rerolled = await nextPhotoReplyingTo(fake, 42, photo.message_id, mark);
    expect(String(rerolled.params.caption)).toContain('a kite');
  });

  it('answers bad input with a clear reply, and refuses members outside the allowlist', async () => {
    const w = await setup({ config: { telegram: { allowedUsers: ['42'] } } });
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const chat = fake.privateChat(alice);
    const empty = fake.sendText(chat, alice, '/imagine');
    const badFlag = fake.sendText(chat, alice, 'a fox --steps many');
    const unknown = fake.sendText(chat, alice, '/draw a fox');
    const editOf = async (request: TgMessage) => {
      const status = await placeholderFor(fake, 42, request.message_id);
      const id = fake.messageOf(status).message_id;
      return fake.waitFor((c) => c.method === 'editMessageText' && Number(c.params.message_id) === id, 20_000, 'the refusal');
    };
    expect(String((await editOf(empty)).params.text)).toMatch(/Tell me what to draw/);
    expect(String((await editOf(badFlag)).params.text)).toMatch(/whole number/);
    const unknownReply = await fake.waitFor((c) => c.method === 'sendMessage' && replyToOf(c) === unknown.message_id, 20_000, 'unknown command');
    expect(String(unknownReply.params.text)).toContain("I don't know /draw");

    const mallory = fake.user(66, 'Mallory');
    const refused = fake.sendText(fake.privateChat(mallory), mallory, 'a fox');
    const refusal = await fake.waitFor((c) => c.method === 'sendMessage' && replyToOf(c) === refused.message_id, 20_000, 'refusal');
    expect(String(refusal.params.text)).toMatch(/only open to club members/);
    await w.adapter.stop();
    expect(fake.callsOf('sendPhoto')).toEqual([]);
    expect(await w.harness.store.jobs.byIdempotencyKey(`tg:66:${refused.message_id}`)).toBeUndefined();
  });

  it('waits out a 429 (retry_after 1) and delivers', async () => {
    const w = await setup();
    const { fake } = w;
    fake.fail('sendPhoto', ERRORS.tooManyRequests(1));
    const { photo } = await privatePrompt(w, fake.user(42, 'Alice'), 'a kite --seed 1');
    expect(fake.callsOf('sendPhoto').map((c) => c.status)).toEqual([429, 200]);
    expect((await jobOfResult(w.harness, 42, photo)).status).toBe('delivered');
  });

  it('marks the job undeliverable when the member blocked the bot (403), without retrying', async () => {
    const w = await setup();
    const { fake, harness } = w;
    fake.fail('sendPhoto', ERRORS.blocked());
    const alice = fake.user(42, 'Alice');
    const request = fake.sendText(fake.privateChat(alice), alice, 'a kite --seed 1');
    let job: Job | undefined;
    await expect
      .poll(async () => (job = await harness.store.jobs.byIdempotencyKey(`tg:42:${request.message_id}`))?.delivery?.undeliverable, { timeout: JOB_MS })
      .toMatch(/blocked/);
    expect(job?.status).not.toBe('delivered');
    expect(fake.callsOf('sendPhoto').map((c) => c.status)).toEqual([403]);
    expect(await harness.jobs.pendingDeliveries('telegram')).toEqual([]);
    // Not retried at the next start either.
    await restart(w);
    await w.adapter.stop();
    expect(fake.callsOf('sendPhoto')).toHaveLength(1);
  });

  it('sends a result once when recording its delivery fails for a moment (a busy store), and records it', async () => {
    const w = await setup();
    const { fake, harness } = w;
    const markDelivered = harness.jobs.markDelivered.bind(harness.jobs);
    let failures = 0;
    harness.jobs.markDelivered = async (jobId, ref) => {
      if (failures++ === 0) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return markDelivered(jobId, ref);
    };
    const { photo } = await privatePrompt(w, fake.user(42, 'Alice'), 'a kite --seed 1');
    expect((await jobOfResult(harness, 42, photo)).status).toBe('delivered');
    expect(failures).toBe(2);
    expect(fake.callsOf('sendPhoto')).toHaveLength(1);
  });

  it("answers a second member while the first member's request is still being handled and drawn", async () => {
    const w = await setup();
    const { fake } = w;
    const alice = fake.user(42, 'Alice');
    const bob = fake.user(43, 'Bob');
    // Alice's status message hangs in Telegram: her update handler is stuck on it.
    const release = fake.hold('sendMessage', (p) => Number(p.chat_id) === 42);
    const aliceRequest = fake.sendText(fake.privateChat(alice), alice, 'a castle --seed 2');
    await fake.pollWaiting(2);
    const bobRequest = fake.sendText(fake.privateChat(bob), bob, 'a bridge --seed 4');
    const bobStatus = await placeholderFor(fake, 43, bobRequest.message_id);
    expect(fake.calls.some((c) => chatOf(c) === 42 && c.method !== 'getUpdates')).toBe(false);
    release();
    const [alicePhoto, bobPhoto] = await Promise.all([
      photoReplyingTo(fake, 42, aliceRequest.message_id),
      photoReplyingTo(fake, 43, bobRequest.message_id),
    ]);
    expect(bobStatus.seq).toBeLessThan(alicePhoto.seq);
    expect(bobPhoto.status).toBe(200);
  });

  it("shows 'Queued #n' for a job waiting behind another member's running job", async () => {
    const w = await setup({ config: { limits: { maxSteps: 150 } } });
    const { fake } = w;
    const alice = fake.user(42, 'Alice');
    const bob = fake.user(43, 'Bob');
    const aliceRequest = fake.sendText(fake.privateChat(alice), alice, 'a castle --seed 2 --steps 150');
    await fake.waitFor((c) => c.method === 'sendChatAction' && chatOf(c) === 42, JOB_MS, "Alice's job drawing");
    const bobRequest = fake.sendText(fake.privateChat(bob), bob, 'a bridge --seed 4');
    const bobStatus = fake.messageOf(await placeholderFor(fake, 43, bobRequest.message_id));
    const alicePhoto = await photoReplyingTo(fake, 42, aliceRequest.message_id);
    await photoReplyingTo(fake, 43, bobRequest.message_id);
    const bobEdits = fake.callsOf('editMessageText').filter((c) => Number(c.params.message_id) === bobStatus.message_id);
    const queued = bobEdits.find((c) => /^Queued (#1|next up) · /.test(String(c.params.text)));
    expect(queued).toBeDefined();
    expect(queued?.seq ?? Infinity).toBeLessThan(alicePhoto.seq);
  });

  it('keeps buttons and reactions working across a restart, and delivers what finished while the bot was down', async () => {
    const w = await setup();
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const { photoCall, photo, chat } = await privatePrompt(w, alice, 'a windmill --seed 9');
    await jobOfResult(w.harness, 42, photo);
    await restart(w);
    const result = fake.messages.get(`42:${photo.message_id}`) as TgMessage;
    const mark = fake.calls.at(-1)?.seq ?? 0;
    fake.pressButton(alice, result, buttonData(photoCall, 'V1'));
    const varied = await nextPhotoReplyingTo(fake, 42, photo.message_id, mark);
    expect(String(varied.params.caption)).toMatch(/variation seed/);
    const mark2 = fake.calls.at(-1)?.seq ?? 0;
    fake.react(chat, photo.message_id, alice, ['🔁']);
    await nextPhotoReplyingTo(fake, 42, photo.message_id, mark2);

    // A result Telegram refuses (as photo and as document) stays waiting, and goes out at the next start.
    fake.fail('sendPhoto', { error_code: 400, description: 'Bad Request: PHOTO_INVALID_DIMENSIONS' });
    fake.fail('sendDocument', { error_code: 400, description: 'Bad Request: wrong file' });
    const late = fake.sendText(chat, alice, 'a late owl --seed 12');
    await fake.waitFor((c) => c.method === 'sendDocument' && c.status === 400, JOB_MS, 'the refused fallback');
    const lateStatus = fake.messageOf(await placeholderFor(fake, 42, late.message_id));
    await restart(w);
    const delivered = await photoReplyingTo(fake, 42, late.message_id);
    expect(String(delivered.params.caption)).toContain('a late owl');
    // The old status message (known from the stored job) is cleaned up by the new process.
    await fake.waitFor((c) => c.method === 'deleteMessage' && Number(c.params.message_id) === lateStatus.message_id, 20_000, 'old status deletion');
  });

  it('puts details that do not fit the caption in a follow-up message, and queues a re-delivered update once', async () => {
    const w = await setup(ONE_CHUNK);
    const { fake, harness } = w;
    const alice = fake.user(42, 'Alice');
    const chat = fake.privateChat(alice);
    const words = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
    const request = fake.sendText(chat, alice, `${words} --seed 3`);
    // Telegram re-sends an update the bot did not confirm (a crash mid-batch): same message, new update id.
    fake.push({ message: request });
    const photoCall = await photoReplyingTo(fake, 42, request.message_id);
    const photo = fake.messageOf(photoCall);
    expect(String(photoCall.params.caption).length).toBeLessThanOrEqual(1024);
    const details = await fake.waitFor((c) => c.method === 'sendMessage' && replyToOf(c) === photo.message_id, 20_000, 'details');
    expect(String(details.params.text)).toMatch(/left out: .*word11\d/);
    await jobOfResult(harness, 42, photo);
    // 🗑 removes the photo and its details message.
    const del = fake.pressButton(alice, fake.messages.get(`42:${photo.message_id}`) as TgMessage, buttonData(photoCall, '🗑'));
    await answerOf(fake, del);
    const detailsId = fake.messageOf(details).message_id;
    await fake.waitFor((c) => c.method === 'deleteMessage' && Number(c.params.message_id) === detailsId, 20_000, 'details deletion');
    expect(fake.messages.has(`42:${photo.message_id}`)).toBe(false);
    await w.adapter.stop();
    expect(fake.callsOf('sendPhoto')).toHaveLength(1);
    // stop() confirmed everything it took, so a new process does not see these updates again.
    expect(fake.unconfirmed).toBe(0);
    expect(harness.logLines.join('\n')).not.toContain(fake.token);
  });

  it('does not send a photo again after a restart when only the job record of its delivery was missing', async () => {
    const w = await setup();
    const { fake, harness } = w;
    // The job store cannot take the delivery record in this life (a kill would have the same effect).
    harness.jobs.markDelivered = async () => {
      throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
    };
    const alice = fake.user(42, 'Alice');
    const request = fake.sendText(fake.privateChat(alice), alice, 'a kite --seed 1');
    const photo = fake.messageOf(await photoReplyingTo(fake, 42, request.message_id));
    await expect.poll(() => harness.logLines.some((l) => l.includes('result sent but its delivery could not be recorded')), { timeout: 20_000 }).toBe(true);
    await restart(w);
    const job = await jobOfResult(w.harness, 42, photo);
    expect(job.status).toBe('delivered');
    expect(fake.callsOf('sendPhoto')).toHaveLength(1);
  });

  it('records the delivery the moment Telegram accepts the photo, before the details message and the status removal', async () => {
    const w = await setup(ONE_CHUNK);
    const { fake, harness } = w;
    const alice = fake.user(42, 'Alice');
    const chat = fake.privateChat(alice);
    const words = Array.from({ length: 120 }, (_, i) => `word${i}`).join(' ');
    // The details message (a reply to the photo) hangs in Telegram.
    const release = fake.hold('sendMessage', (p) => {
      const replyTo = p.reply_parameters as JsonObject | undefined;
      return replyTo !== undefined && fake.callsOf('sendPhoto').some((c) => c.status === 200 && fake.messageOf(c).message_id === Number(replyTo.message_id));
    });
    const request = fake.sendText(chat, alice, `${words} --seed 3`);
    const photo = fake.messageOf(await photoReplyingTo(fake, 42, request.message_id));
    const job = await jobOfResult(harness, 42, photo);
    expect(job.status).toBe('delivered');
    const status = fake.messageOf(await placeholderFor(fake, 42, request.message_id));
    // Recorded while the details are still on their way and the status message is still up.
    expect(fake.messages.has(`42:${status.message_id}`)).toBe(true);
    release();
    await fake.waitFor((c) => c.method === 'deleteMessage' && Number(c.params.message_id) === status.message_id, 20_000, 'status deletion');
  });

  it('rerolls again when the same member removes 🔁 and adds it again, or adds another reroll reaction', async () => {
    const w = await setup({ config: { telegram: { rerollReactions: ['🔁', '🤔'] } } });
    const { fake } = w;
    const alice = fake.user(42, 'Alice', 'alice');
    const { photo, chat } = await privatePrompt(w, alice, 'a paper boat --seed 5');
    await jobOfResult(w.harness, 42, photo);
    const rerollPhotos = () => fake.callsOf('sendPhoto').filter((c) => c.status === 200 && replyToOf(c) === photo.message_id).length;
    fake.react(chat, photo.message_id, alice, ['🔁']);
    await expect.poll(rerollPhotos, { timeout: JOB_MS }).toBe(1);
    fake.react(chat, photo.message_id, alice, [], ['🔁']);
    fake.react(chat, photo.message_id, alice, ['🔁']);
    await expect.poll(rerollPhotos, { timeout: JOB_MS }).toBe(2);
    fake.react(chat, photo.message_id, alice, ['🔁', '🤔'], ['🔁']);
    await expect.poll(rerollPhotos, { timeout: JOB_MS }).toBe(3);
    // Taking reactions away rerolls nothing.
    fake.react(chat, photo.message_id, alice, [], ['🔁', '🤔']);
    await fake.pollWaiting(fake.react(chat, photo.message_id, alice, ['👍']) + 1);
    await w.adapter.stop();
    expect(rerollPhotos()).toBe(3);
  });

  it('keeps polling through 409 Conflict: retried with backoff and logged, and the next request is answered', async () => {
    const w = await setup();
    const { fake, harness } = w;
    fake.fail('getUpdates', ERRORS.conflict(), 3);
    const alice = fake.user(42, 'Alice');
    const chat = fake.privateChat(alice);
    // Completes the waiting poll; the next three get 409.
    fake.sendText(chat, alice, '/help');
    await expect.poll(() => fake.callsOf('getUpdates').filter((c) => c.status === 409).length, { timeout: 20_000 }).toBe(3);
    const later = fake.sendText(chat, alice, '/help');
    await fake.waitFor((c) => c.method === 'sendMessage' && replyToOf(c) === later.message_id, 20_000, 'an answer after the conflicts');
    const warnings = harness.logLines.filter((l) => l.includes('409 Conflict') && l.includes('retrying'));
    expect(warnings).toHaveLength(3);
    expect(harness.logLines.join('\n')).not.toContain(fake.token);
  });

  it('settles a deploy overlap on the newer instance: the old one yields, and its stop does not deafen the new one', async () => {
    const w = await setup();
    const { fake, harness } = w;
    const newer = await startTelegram(
      { config: harness.config, jobs: harness.jobs, commands: harness.commands, log: harness.log, token: fake.token },
      FAST_POLLING,
    );
    // The newer poll ended the old one's with 409; the old one sees the newer lease and yields.
    await expect.poll(() => harness.logLines.some((l) => l.includes('a newer instance of this bot polls now')), { timeout: 20_000 }).toBe(true);
    await w.adapter.stop();
    w.adapter = newer;
    const alice = fake.user(42, 'Alice');
    const request = fake.sendText(fake.privateChat(alice), alice, '/help');
    await fake.waitFor((c) => c.method === 'sendMessage' && replyToOf(c) === request.message_id, 20_000, 'the newer instance answering');
    // One conflict (the old instance's poll), and none after it: the newer one never lost its poll.
    expect(fake.callsOf('getUpdates').filter((c) => c.status === 409)).toHaveLength(1);
  });

  it('ends polling with one clear line and reports it as fatal when the token is revoked while running (401)', async () => {
    let fatal: string | undefined;
    const w = await setup({}, (reason) => (fatal = reason));
    const { fake, harness } = w;
    fake.revokeToken();
    await expect.poll(() => fatal, { timeout: 20_000 }).toMatch(/no longer accepts the bot token \(401/);
    expect(harness.logLines.filter((l) => l.includes('no longer accepts the bot token'))).toHaveLength(1);
    const longPolls = () => fake.callsOf('getUpdates').filter((c) => Number(c.params.timeout) > 0).length;
    const atFatal = longPolls();
    await w.adapter.stop();
    // No retry loop after a revoked token.
    expect(longPolls()).toBe(atFatal);
    expect(harness.logLines.join('\n')).not.toContain(fake.token);

    await expect(
      startTelegram({ config: harness.config, jobs: harness.jobs, commands: harness.commands, log: harness.log, token: '1:not-the-token' }),
    ).rejects.toThrow(/rejected the bot token \(401/);
  });
});
