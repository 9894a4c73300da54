// The fake Bot API checked with a bare grammY client (no adapter): if these fail, the
// adapter tests would be testing the fake, not the bot.
import { autoRetry } from '@grammyjs/auto-retry';
import { run, type RunnerHandle } from '@grammyjs/runner';
import { Bot, GrammyError, InputFile } from 'grammy';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { ERRORS, FakeBotApi, textEntities } from './fakes/telegram/server.js';

let fake: FakeBotApi | undefined;
let runner: RunnerHandle | undefined;

afterEach(async () => {
  if (runner?.isRunning()) await runner.stop();
  runner = undefined;
  await fake?.close();
  fake = undefined;
});

async function bareBot(): Promise<{ fake: FakeBotApi; bot: Bot }> {
  fake = await FakeBotApi.start();
  const bot = new Bot(fake.token, { client: { apiRoot: fake.apiRoot } });
  return { fake, bot };
}

describe('fake Telegram Bot API with the real grammY client', () => {
  it('long-polls: answers as soon as an update is pushed, honours offsets and allowed_updates', async () => {
    const { fake, bot } = await bareBot();
    const seen: string[] = [];
    bot.on('message:text', (ctx) => {
      seen.push(ctx.message.text);
    });
    // A poll timeout far beyond expect.poll's: the updates can only arrive in time if the
    // waiting poll is answered when they are pushed.
    runner = run(bot, { runner: { fetch: { timeout: 30, allowed_updates: ['message', 'message_reaction'] }, silent: true } });
    const alice = fake.user(42, 'Alice');
    // The poll is already waiting when the update arrives: it must be answered at once, not after 5 s.
    await fake.pollWaiting();
    fake.sendText(fake.privateChat(alice), alice, 'first');
    fake.sendText(fake.privateChat(alice), alice, 'second');
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['first', 'second']);
    expect(fake.allowedUpdates[0]).toEqual(['message', 'message_reaction']);
    // The next poll confirms both (offset = last id + 1): they are not handed out again.
    await fake.pollWaiting(3);
    expect(fake.unconfirmed).toBe(0);
    await runner.stop();
    expect(seen).toEqual(['first', 'second']);
  });

  it('ends a pending long poll with 409 when a newer getUpdates arrives (as Telegram does), and a wrong or revoked token with 401', async () => {
    fake = await FakeBotApi.start();
    const older = new Bot(fake.token, { client: { apiRoot: fake.apiRoot }, botInfo: undefined });
    const newer = new Bot(fake.token, { client: { apiRoot: fake.apiRoot }, botInfo: undefined });
    const oldPoll = older.api.getUpdates({ offset: 0, timeout: 3 });
    await fake.pollWaiting();
    const newPoll = newer.api.getUpdates({ offset: 0, timeout: 3 });
    await expect(oldPoll).rejects.toMatchObject({ error_code: 409, description: expect.stringMatching(/terminated by other getUpdates/) });
    await fake.pollWaiting();
    fake.push({ message: { message_id: 1, date: 0, chat: { id: 1, type: 'private', first_name: 'A' }, text: 'x' } });
    await expect(newPoll).resolves.toHaveLength(1);
    const wrong = new Bot('1:wrong', { client: { apiRoot: fake.apiRoot } });
    await expect(wrong.api.getMe()).rejects.toMatchObject({ error_code: 401 });
    const pending = newer.api.getUpdates({ offset: 2, timeout: 3 });
    await fake.pollWaiting(2);
    fake.revokeToken();
    await expect(pending).rejects.toMatchObject({ error_code: 401 });
    await expect(newer.api.getMe()).rejects.toMatchObject({ error_code: 401 });
  });

  it('receives multipart sendPhoto with attach:// resolved and reports the picture size', async () => {
    const { fake, bot } = await bareBot();
    const png = await sharp({ create: { width: 24, height: 16, channels: 3, background: '#c04020' } })
      .png()
      .toBuffer();
    const message = await bot.api.sendPhoto(7, new InputFile(png, 'grid.png'), {
      caption: 'a red fox',
      reply_markup: { inline_keyboard: [[{ text: 'U1', callback_data: 'v1:up:abc:0' }]] },
    });
    expect(message.photo?.[0]).toMatchObject({ width: 24, height: 16 });
    const call = fake.callsOf('sendPhoto')[0];
    expect(call?.files.photo?.data.equals(png)).toBe(true);
    expect(call?.files.photo?.filename).toBe('grid.png');
    expect(call?.params.caption).toBe('a red fox');
    expect(call?.params.reply_markup).toEqual({ inline_keyboard: [[{ text: 'U1', callback_data: 'v1:up:abc:0' }]] });
  });

  it('serves errors on demand: 429 waited out by auto-retry, 403 surfaces, not-modified on identical edits, 404 for unknown methods', async () => {
    const { fake, bot } = await bareBot();
    bot.api.config.use(autoRetry({ maxRetryAttempts: 2, maxDelaySeconds: 5 }));
    fake.fail('sendMessage', ERRORS.tooManyRequests(1));
    const sent = await bot.api.sendMessage(5, 'hello');
    expect(fake.callsOf('sendMessage').map((c) => c.status)).toEqual([429, 200]);

    fake.fail('sendMessage', ERRORS.blocked());
    await expect(bot.api.sendMessage(5, 'again')).rejects.toSatisfy((e) => e instanceof GrammyError && e.error_code === 403);
    expect(fake.callsOf('sendMessage')).toHaveLength(3);

    await expect(bot.api.editMessageText(5, sent.message_id, 'hello')).rejects.toMatchObject({ error_code: 400 });
    await expect(bot.api.editMessageText(5, sent.message_id, 'changed')).resolves.toMatchObject({ text: 'changed' });

    await expect(bot.api.raw.sendDice({ chat_id: 5 })).rejects.toMatchObject({ error_code: 404 });
    expect(fake.callsOf('sendDice')[0]?.status).toBe(404);
  });

  it('computes command and mention entities with UTF-16 offsets', () => {
    expect(textEntities('/imagine@club_imagine_bot a fox')).toEqual([{ type: 'bot_command', offset: 0, length: 25 }]);
    expect(textEntities('🦊 @club_imagine_bot fox')).toEqual([{ type: 'mention', offset: 3, length: 17 }]);
  });
});
