// The Telegram adapter's pure parts: which messages are requests, length limits, button data.
import { GrammyError, type Api } from 'grammy';
import type { Message } from 'grammy/types';
import type { Logger } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeAction } from '../commands/codec.js';
import { classifyFailure, describeFailure } from '../src/adapters/telegram/errors.js';
import { FloodGate } from '../src/adapters/telegram/flood.js';
import { escapeHtml, htmlPieces } from '../src/adapters/telegram/html.js';
import { CALLBACK_DATA_LIMIT, inlineKeyboard } from '../src/adapters/telegram/keyboard.js';
import { readMessage } from '../src/adapters/telegram/requests.js';
import { StatusBoard } from '../src/adapters/telegram/status.js';
import { clip, fitCaption, splitMessage } from '../src/adapters/telegram/text.js';
import type { Config } from '../src/config/schema.js';
import type { Job } from '../src/jobs/types.js';
import { parseHtml, textEntities } from './fakes/telegram/server.js';

const BOT = 'club_imagine_bot';

function msg(text: string, chatType: 'private' | 'supergroup'): Parameters<typeof readMessage>[0] {
  return { text, entities: textEntities(text) as unknown as Message['entities'], chat: { type: chatType } };
}

describe('readMessage', () => {
  it('treats any private text as a prompt, keeping inline flags and line breaks for the parser', () => {
    const pasted = 'a fox\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512';
    expect(readMessage(msg('a red fox --ar 3:2', 'private'), BOT)).toEqual({ kind: 'command', command: 'imagine', text: 'a red fox --ar 3:2', via: 'text' });
    expect(readMessage(msg(pasted, 'private'), BOT)).toMatchObject({ command: 'imagine', text: pasted });
  });

  it('in groups takes /imagine, /imagine@thisbot and mentions, and ignores plain text and other bots', () => {
    expect(readMessage(msg('/imagine a fox', 'supergroup'), BOT)).toEqual({ kind: 'command', command: 'imagine', text: 'a fox', via: 'slash' });
    expect(readMessage(msg('/imagine@Club_Imagine_Bot a fox', 'supergroup'), BOT)).toMatchObject({ command: 'imagine', text: 'a fox' });
    expect(readMessage(msg('@club_imagine_bot a fox  in snow', 'supergroup'), BOT)).toMatchObject({ command: 'imagine', text: 'a fox in snow', via: 'text' });
    expect(readMessage(msg('a fox in the snow', 'supergroup'), BOT)).toEqual({ kind: 'ignore' });
    expect(readMessage(msg('/imagine@other_bot a fox', 'supergroup'), BOT)).toEqual({ kind: 'ignore' });
    expect(readMessage(msg('hey @someone_else look', 'supergroup'), BOT)).toEqual({ kind: 'ignore' });
    expect(readMessage(msg('/stats', 'supergroup'), BOT)).toEqual({ kind: 'ignore' });
  });

  it('maps the menu commands, /start to help, and reports unknown commands where they were meant for us', () => {
    expect(readMessage(msg('/start', 'private'), BOT)).toMatchObject({ command: 'help' });
    expect(readMessage(msg('/settings steps 30', 'private'), BOT)).toMatchObject({ command: 'settings', text: 'steps 30' });
    expect(readMessage(msg('/cancel ab12cd34', 'supergroup'), BOT)).toMatchObject({ command: 'cancel', text: 'ab12cd34' });
    expect(readMessage(msg('/queue', 'private'), BOT)).toMatchObject({ command: 'queue' });
    expect(readMessage(msg('/draw a fox', 'private'), BOT)).toEqual({ kind: 'unknown-command', name: 'draw' });
    expect(readMessage(msg('/constructor', 'private'), BOT)).toEqual({ kind: 'unknown-command', name: 'constructor' });
    expect(readMessage(msg('/__proto__@club_imagine_bot', 'supergroup'), BOT)).toEqual({ kind: 'unknown-command', name: '__proto__' });
    expect(readMessage(msg('/draw@club_imagine_bot a fox', 'supergroup'), BOT)).toEqual({ kind: 'unknown-command', name: 'draw' });
  });
});

describe('text limits', () => {
  it('clips to the limit without splitting a surrogate pair', () => {
    const text = `${'a'.repeat(1022)}🦊🦊`;
    const clipped = clip(text, 1024);
    expect(clipped.length).toBeLessThanOrEqual(1024);
    expect(clipped.endsWith('…')).toBe(true);
    expect(clipped).not.toMatch(/[\ud800-\udbff]…$/);
  });

  it('splits long text into ≤ 4096-unit messages at line breaks and loses nothing', () => {
    const lines = Array.from({ length: 300 }, (_, i) => `line ${i} ${'x'.repeat(30)}`);
    const pieces = splitMessage(lines.join('\n'));
    expect(pieces.length).toBeGreaterThan(1);
    for (const p of pieces) expect(p.length).toBeLessThanOrEqual(4096);
    expect(pieces.join('\n')).toBe(lines.join('\n'));
  });

  it('fits a caption into 1024 and returns the overflow', () => {
    const long = Array.from({ length: 60 }, (_, i) => `word${i} `.repeat(5)).join('\n');
    const { caption, overflow } = fitCaption(long);
    expect(caption.length).toBeLessThanOrEqual(1024);
    expect(overflow.length).toBeGreaterThan(0);
    expect(`${caption}\n${overflow}`.replace(/\s+/g, ' ')).toBe(long.trim().replace(/\s+/g, ' '));
    expect(fitCaption('short')).toEqual({ caption: 'short', overflow: '' });
  });
});

describe('inline keyboard', () => {
  it('encodes every button with callback data of at most 64 bytes that decodes back to its action', () => {
    const kb = inlineKeyboard([
      [0, 1, 2, 3].map((index) => ({ action: { action: 'upscale' as const, jobId: 'abcd1234', index }, label: `U${index + 1}`, style: 'secondary' as const })),
      [{ action: { action: 'reroll', jobId: 'abcd1234' }, label: '🔁', style: 'primary' }],
    ]);
    const buttons = kb?.inline_keyboard.flat() ?? [];
    expect(buttons).toHaveLength(5);
    for (const b of buttons) {
      const data = 'callback_data' in b ? b.callback_data : '';
      expect(Buffer.byteLength(data)).toBeLessThanOrEqual(CALLBACK_DATA_LIMIT);
      expect(decodeAction(data)).toBeDefined();
    }
    expect(decodeAction(('callback_data' in buttons[2]! && buttons[2].callback_data) || '')).toEqual({ action: 'upscale', jobId: 'abcd1234', index: 2 });
  });

  it('drops a button the codec cannot encode instead of failing the message', () => {
    const dropped: string[] = [];
    const kb = inlineKeyboard([[{ action: { action: 'info', jobId: 'NOT VALID!' }, label: 'ℹ️', style: 'secondary' }]], (l) => dropped.push(l));
    expect(kb).toBeUndefined();
    expect(dropped).toEqual(['ℹ️']);
  });
});

describe('API failures', () => {
  const err = (code: number, description: string) =>
    new GrammyError('call failed', { ok: false, error_code: code, description }, 'sendPhoto', { chat_id: 1 });

  it('tells not-modified, blocked, gone, fatal and transient apart', () => {
    expect(classifyFailure(err(400, 'Bad Request: message is not modified: specified new message content'))).toBe('not-modified');
    expect(classifyFailure(err(403, 'Forbidden: bot was blocked by the user'))).toBe('unreachable');
    expect(classifyFailure(err(400, 'Bad Request: chat not found'))).toBe('unreachable');
    expect(classifyFailure(err(400, 'Bad Request: message to edit not found'))).toBe('message-gone');
    expect(classifyFailure(err(401, 'Unauthorized'))).toBe('fatal');
    expect(classifyFailure(err(409, 'Conflict'))).toBe('transient');
    expect(classifyFailure(err(502, 'Bad Gateway'))).toBe('transient');
    expect(classifyFailure(new Error('boom'))).toBe('transient');
  });

  it('describes failures for the log without payloads or tokens', () => {
    const e = err(400, 'Bad Request: wrong url https://api.telegram.org/bot123456:AAbbCCdd_eeFF-gg/sendPhoto');
    const described = describeFailure(e);
    expect(described).toEqual({ method: 'sendPhoto', code: 400, description: expect.any(String) });
    expect(JSON.stringify(described)).not.toContain('123456:AAbb');
  });
});

describe('status message pacing', () => {
  type Sent = { method: string; at: number; text?: string; action?: string };

  function board(options: { notModified?: boolean } = {}) {
    const sent: Sent[] = [];
    const api = {
      editMessageText: async (_chat: number, _id: number, text: string) => {
        sent.push({ method: 'edit', at: Date.now(), text });
        if (options.notModified) {
          throw new GrammyError('x', { ok: false, error_code: 400, description: 'Bad Request: message is not modified' }, 'editMessageText', {});
        }
        return true;
      },
      sendMessage: async (_chat: number, text: string) => {
        sent.push({ method: 'send', at: Date.now(), text });
        return { message_id: 77 };
      },
      sendChatAction: async (_chat: number, action: string) => {
        sent.push({ method: 'action', at: Date.now(), action });
        return true;
      },
    };
    const config = { telegram: { groupEditMs: 3000, privateEditMs: 1000 } } as unknown as Config;
    const log = { debug() {}, warn() {}, error() {}, info() {} } as unknown as Logger;
    return { sent, status: new StatusBoard({ api: api as unknown as Api, config, log }) };
  }

  function job(chatType: string, statusMessageId: number | null): Job {
    return {
      id: 'job00001',
      target: { platform: 'telegram', chatId: '-100', handle: { chatType, statusMessageId, replyTo: 5, threadId: null } },
    } as unknown as Job;
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  it('edits a group status at most once per groupEditMs and coalesces to the latest text', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { sent, status } = board();
    const j = job('supergroup', 10);
    const t0 = Date.now();
    status.show(j, 'Queued #3 · about 40 s');
    await vi.advanceTimersByTimeAsync(100);
    status.show(j, 'Drawing… step 1/20');
    status.show(j, 'Drawing… step 2/20');
    await vi.advanceTimersByTimeAsync(1000);
    status.show(j, 'Drawing… step 7/20');
    await vi.advanceTimersByTimeAsync(5000);
    status.settle(j, 'Failed: out of memory');
    await vi.advanceTimersByTimeAsync(5000);
    const edits = sent.filter((s) => s.method === 'edit');
    expect(edits.map((e) => e.text)).toEqual(['Queued #3 · about 40 s', 'Drawing… step 7/20', 'Failed: out of memory']);
    expect(edits.map((e) => e.at - t0)).toEqual([0, 3000, 6100]);
    // Settled: later events for the job change nothing.
    status.show(j, 'Drawing… step 9/20');
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent.filter((s) => s.method === 'edit')).toHaveLength(3);
  });

  it('paces private chats by privateEditMs, sends a status message when none exists, and takes not-modified as done', async () => {
    vi.useFakeTimers({ now: 2_000_000 });
    const { sent, status } = board({ notModified: true });
    const j = job('private', null);
    status.show(j, 'Queued #1 · about 5 s');
    await vi.advanceTimersByTimeAsync(10);
    status.show(j, 'Drawing…');
    await vi.advanceTimersByTimeAsync(5000);
    expect(sent.map((s) => s.method)).toEqual(['send', 'edit']);
    expect((sent[1]?.at ?? 0) - (sent[0]?.at ?? 0)).toBe(1000);
  });

  it('repeats the upload_photo chat action while drawing and stops when the job is done', async () => {
    vi.useFakeTimers({ now: 3_000_000 });
    const { sent, status } = board();
    const j = job('private', 10);
    status.drawing(j);
    status.drawing(j);
    await vi.advanceTimersByTimeAsync(9000);
    expect(sent.filter((s) => s.action === 'upload_photo')).toHaveLength(3);
    expect(status.finish(j)).toBe(10);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(sent.filter((s) => s.action === 'upload_photo')).toHaveLength(3);
  });
});

describe('flood gate (429 retry_after)', () => {
  type Call = { method: string; chat?: number; at: number };

  function gate(answers: Record<string, { retryAfter?: number }[]>) {
    let clock = 1_000_000;
    const calls: Call[] = [];
    const slept: number[] = [];
    const flood = new FloodGate({
      now: () => clock,
      sleep: async (ms) => {
        slept.push(ms);
        clock += ms;
      },
    });
    const prev = (async (method: string, payload: { chat_id?: number }) => {
      calls.push({ method, ...(payload.chat_id !== undefined ? { chat: payload.chat_id } : {}), at: clock });
      const next = answers[method]?.shift();
      if (next?.retryAfter !== undefined) {
        return { ok: false, error_code: 429, description: `Too Many Requests: retry after ${next.retryAfter}`, parameters: { retry_after: next.retryAfter } };
      }
      return { ok: true, result: true };
    }) as unknown as Parameters<FloodGate['transformer']>[0];
    const call = (method: string, chatId?: number) =>
      flood.transformer(prev, method as 'sendPhoto', (chatId !== undefined ? { chat_id: chatId } : {}) as never);
    return { calls, slept, call, advance: (ms: number) => (clock += ms), flood };
  }

  it('holds every later call for that chat until retry_after has passed, to the millisecond, and leaves other chats alone', async () => {
    const g = gate({ sendPhoto: [{ retryAfter: 60 }] });
    const first = await g.call('sendPhoto', 42);
    expect(first.ok).toBe(false);
    const start = g.calls[0]!.at;
    // A retry planned for 15 s later (the old delivery retry) still reaches Telegram only after 60 s.
    g.advance(15_000);
    await g.call('sendPhoto', 42);
    expect(g.slept).toEqual([45_000]);
    expect(g.calls[1]!.at - start).toBe(60_000);
    // Another chat was never held.
    await g.call('sendMessage', 43);
    expect(g.slept).toEqual([45_000]);
  });

  it('keeps a call without a chat (getUpdates, getMe) in its own scope', async () => {
    const g = gate({ getUpdates: [{ retryAfter: 5 }] });
    await g.call('getUpdates');
    await g.call('sendMessage', 42);
    expect(g.slept).toEqual([]);
    await g.call('getUpdates');
    expect(g.slept).toEqual([5_000]);
    expect(g.flood.remainingMs()).toBe(0);
  });
});

describe('copy-paste parts in HTML', () => {
  const tricky = 'a *bold* _fox_ ~~in~~ <snow> & `ice`\nNegative prompt: 2 < 3 && 4 > 1\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5';

  it('draws code parts as <pre> blocks that Telegram reads back exactly as typed', () => {
    const pieces = htmlPieces([{ text: 'Copy this:' }, { text: tricky, code: true }]);
    expect(pieces).toHaveLength(1);
    const parsed = parseHtml(pieces[0]!);
    if ('error' in parsed) throw new Error(parsed.error);
    const pre = parsed.entities.find((e) => e.type === 'pre')!;
    expect(parsed.text.slice(Number(pre.offset), Number(pre.offset) + Number(pre.length))).toBe(tricky);
    expect(parsed.text.startsWith('Copy this:')).toBe(true);
  });

  it('splits long replies into pieces within 4096 that all parse, losing nothing of the code', () => {
    const long = Array.from({ length: 900 }, (_, i) => `line ${i} <&> *_~~`).join('\n');
    const pieces = htmlPieces([{ text: 'Info:' }, { text: long, code: true }, { text: 'end <ok>' }]);
    expect(pieces.length).toBeGreaterThan(1);
    let code = '';
    for (const piece of pieces) {
      expect(piece.length).toBeLessThanOrEqual(4096);
      const parsed = parseHtml(piece);
      if ('error' in parsed) throw new Error(parsed.error);
      for (const e of parsed.entities.filter((x) => x.type === 'pre')) {
        code += `${code ? '\n' : ''}${parsed.text.slice(Number(e.offset), Number(e.offset) + Number(e.length))}`;
      }
    }
    expect(code.replace(/\s+/g, ' ')).toBe(long.replace(/\s+/g, ' '));
    expect(escapeHtml('<&>')).toBe('&lt;&amp;&gt;');
  });
});
