// A fake Telegram Bot API on loopback, just deep enough for the real grammY client and
// @grammyjs/runner: long-polling getUpdates with offset semantics, multipart uploads with
// `attach://` ids, message state so edits and callbacks refer to real message ids, and
// error replies on demand. Every call is recorded for assertions.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import busboy from 'busboy';
import sharp from 'sharp';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface UploadedFile {
  /** The file name the client sent (grammY sends it unquoted). */
  filename: string;
  mimeType: string;
  data: Buffer;
}

export interface RecordedCall {
  seq: number;
  method: string;
  /** Body fields; multipart fields that hold JSON (reply_markup…) are parsed. */
  params: JsonObject;
  /** Uploaded files by the field that referenced them (`photo`, `document`), `attach://` resolved. */
  files: Record<string, UploadedFile>;
  status: number;
  /** What the fake answered (`result` on success). */
  response: JsonObject;
  /** When the answer was written to a client still connected (unset: the client was gone, e.g. killed). */
  answeredAt?: number;
}

export interface ApiErrorSpec {
  error_code: number;
  description: string;
  parameters?: { retry_after?: number; migrate_to_chat_id?: number };
}

export interface TgUser extends JsonObject {
  id: number;
  is_bot: boolean;
  first_name: string;
}

export interface TgChat extends JsonObject {
  id: number;
  type: 'private' | 'group' | 'supergroup';
}

export interface TgMessage extends JsonObject {
  message_id: number;
  date: number;
  chat: TgChat;
}

export const BOT_USERNAME = 'club_imagine_bot';

export const ERRORS = {
  tooManyRequests: (retryAfter: number): ApiErrorSpec => ({
    error_code: 429,
    description: `Too Many Requests: retry after ${retryAfter}`,
    parameters: { retry_after: retryAfter },
  }),
  blocked: (): ApiErrorSpec => ({ error_code: 403, description: 'Forbidden: bot was blocked by the user' }),
  notModified: (): ApiErrorSpec => ({
    error_code: 400,
    description:
      'Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
  }),
  serverError: (): ApiErrorSpec => ({ error_code: 502, description: 'Bad Gateway' }),
  conflict: (): ApiErrorSpec => ({
    error_code: 409,
    description: 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running',
  }),
} as const;

interface PendingPoll {
  offset: number;
  limit: number;
  respond: (updates: JsonObject[]) => void;
  /** Ends the poll with an error instead (409 when a newer poll arrives, 401 when the token is revoked). */
  fail: (body: JsonObject) => void;
}

export interface FakeBotApiOptions {
  token?: string;
  /**
   * Round-trip time of every call but getUpdates, spent after Telegram has acted on it: a client
   * that dies meanwhile never learns that its message was sent (as with the real network).
   */
  latencyMs?: number;
}

export class FakeBotApi {
  readonly token: string;
  readonly bot: TgUser;
  readonly calls: RecordedCall[] = [];
  /** Messages the bot sent or edited, by `${chatId}:${messageId}`. */
  readonly messages = new Map<string, TgMessage>();
  /** Every allowed_updates list a getUpdates call carried. */
  readonly allowedUpdates: Json[] = [];

  private readonly server: Server;
  private readonly events = new EventEmitter();
  private readonly updates: JsonObject[] = [];
  private readonly failures = new Map<string, ApiErrorSpec[]>();
  private readonly polls = new Set<PendingPoll>();
  private readonly holds: { method: string; matches: (params: JsonObject) => boolean; gate: Promise<void> }[] = [];
  private readonly releases = new Set<() => void>();
  private nextUpdateId = 1;
  private nextMessageId = 1000;
  private nextCallbackId = 1;
  private seq = 0;
  private port = 0;
  /** After revokeToken(): every call answers 401, as after /revoke in @BotFather. */
  private revoked = false;
  private readonly latencyMs: number;

  private constructor(options: FakeBotApiOptions) {
    this.token = options.token ?? '123456:TEST-token_abcdefghijklmnopqrstuvwxyz';
    this.latencyMs = options.latencyMs ?? 0;
    this.bot = { id: 999_000, is_bot: true, first_name: 'Club Imagine', username: BOT_USERNAME };
    this.server = createServer((req, res) => {
      this.route(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.reply(res, 500, { ok: false, error_code: 500, description: String(err) });
      });
    });
    this.events.setMaxListeners(100);
  }

  static async start(options: FakeBotApiOptions = {}): Promise<FakeBotApi> {
    const fake = new FakeBotApi(options);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', resolve));
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  /** Updates not yet confirmed by a getUpdates with a higher offset. */
  get unconfirmed(): number {
    return this.updates.length;
  }

  /** What `client.apiRoot` should be. */
  get apiRoot(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async close(): Promise<void> {
    this.releaseAll();
    for (const poll of this.polls) poll.respond([]);
    this.polls.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- fault injection

  /** The next `times` calls of `method` answer with this error instead of succeeding. */
  fail(method: string, error: ApiErrorSpec, times = 1): void {
    const list = this.failures.get(method) ?? [];
    for (let i = 0; i < times; i++) list.push(error);
    this.failures.set(method, list);
  }

  /**
   * Holds the next call of `method` whose params match until the returned function is called,
   * like a slow Telegram; other calls go through meanwhile.
   */
  hold(method: string, matches: (params: JsonObject) => boolean = () => true): () => void {
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    this.holds.push({ method, matches, gate });
    this.releases.add(release);
    return release;
  }

  /** The token stops working (revoked in @BotFather): every later call, and a pending long poll, gets 401. */
  revokeToken(): void {
    this.revoked = true;
    for (const poll of [...this.polls]) poll.fail(apiError(401, 'Unauthorized'));
    this.polls.clear();
  }

  /** Lets every held call through (test teardown: a held client would never stop). */
  releaseAll(): void {
    for (const release of this.releases) release();
    this.releases.clear();
    this.holds.length = 0;
  }

  // ---------------------------------------------------------------- updates

  /** Queues an update (update_id assigned) and wakes a waiting long poll. */
  push(update: JsonObject): number {
    const updateId = this.nextUpdateId++;
    this.updates.push({ update_id: updateId, ...update });
    for (const poll of [...this.polls]) {
      const ready = this.take(poll.offset, poll.limit);
      if (ready.length > 0) {
        this.polls.delete(poll);
        poll.respond(ready);
      }
    }
    return updateId;
  }

  user(id: number, firstName: string, username?: string): TgUser {
    return { id, is_bot: false, first_name: firstName, ...(username ? { username } : {}) };
  }

  privateChat(user: TgUser): TgChat {
    return { id: user.id, type: 'private', first_name: user.first_name };
  }

  groupChat(id: number, title = 'Club'): TgChat {
    return { id, type: 'supergroup', title };
  }

  /** A member's text message; command and mention entities are computed like Telegram's. */
  sendText(chat: TgChat, from: TgUser, text: string): TgMessage {
    const message: TgMessage = {
      message_id: this.nextMessageId++,
      date: Math.floor(Date.now() / 1000),
      chat,
      from,
      text,
    };
    const entities = textEntities(text);
    if (entities.length > 0) message.entities = entities;
    this.messages.set(key(chat.id, message.message_id), message);
    this.push({ message });
    return message;
  }

  /** A button press on a message the bot sent; returns the callback query id. */
  pressButton(from: TgUser, message: TgMessage, data: string): string {
    const id = `cb${this.nextCallbackId++}`;
    this.push({ callback_query: { id, from, chat_instance: `ci${message.chat.id}`, data, message } });
    return id;
  }

  /** A member sets reactions on a message (replacing `old`). */
  react(chat: TgChat, messageId: number, from: TgUser, emojis: string[], old: string[] = []): number {
    const asReaction = (emoji: string): JsonObject => ({ type: 'emoji', emoji });
    return this.push({
      message_reaction: {
        chat,
        message_id: messageId,
        user: from,
        date: Math.floor(Date.now() / 1000),
        old_reaction: old.map(asReaction),
        new_reaction: emojis.map(asReaction),
      },
    });
  }

  // ---------------------------------------------------------------- assertions

  callsOf(method: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  /** Resolves with the first recorded call (past or future) that matches. */
  waitFor(predicate: (call: RecordedCall) => boolean, timeoutMs = 20_000, what = 'a matching call'): Promise<RecordedCall> {
    const found = this.calls.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onCall = (call: RecordedCall) => {
        if (!predicate(call)) return;
        clearTimeout(timer);
        this.events.off('call', onCall);
        resolve(call);
      };
      const timer = setTimeout(() => {
        this.events.off('call', onCall);
        const seen = this.calls.map((c) => `${c.method}(${c.status})`).join(', ');
        reject(new Error(`fake Bot API: timed out waiting for ${what}; calls so far: ${seen}`));
      }, timeoutMs);
      this.events.on('call', onCall);
    });
  }

  /** Resolves when a long poll (from `minOffset` on) is waiting, so a pushed update is answered at once. */
  pollWaiting(minOffset = 0, timeoutMs = 10_000): Promise<void> {
    const waiting = () => [...this.polls].some((p) => p.offset >= minOffset);
    if (waiting()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onPoll = () => {
        if (!waiting()) return;
        clearTimeout(timer);
        this.events.off('poll', onPoll);
        resolve();
      };
      const timer = setTimeout(() => {
        this.events.off('poll', onPoll);
        reject(new Error(`fake Bot API: no long poll from offset ${minOffset} arrived`));
      }, timeoutMs);
      this.events.on('poll', onPoll);
    });
  }

  waitForMethod(method: string, predicate: (call: RecordedCall) => boolean = () => true, timeoutMs?: number): Promise<RecordedCall> {
    return this.waitFor((c) => c.method === method && c.status === 200 && predicate(c), timeoutMs, method);
  }

  /** The message a successful send call created. */
  messageOf(call: RecordedCall): TgMessage {
    const result = call.response.result;
    if (!result || typeof result !== 'object' || Array.isArray(result) || !('message_id' in result)) {
      throw new Error(`${call.method} returned no message`);
    }
    return result as TgMessage;
  }

  // ---------------------------------------------------------------- HTTP

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const match = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' && req.method !== 'GET') return this.reply(res, 405, apiError(405, 'Method Not Allowed'));
    if (!match) return this.reply(res, 404, apiError(404, 'Not Found'));
    const [, token, method = ''] = match;
    const { params, files } = await readBody(req);
    const held = this.holds.findIndex((h) => h.method === method && h.matches(params));
    if (held >= 0) {
      const [hold] = this.holds.splice(held, 1);
      await hold?.gate;
    }
    const record = (status: number, response: JsonObject): RecordedCall => {
      const call: RecordedCall = { seq: ++this.seq, method, params, files, status, response };
      this.calls.push(call);
      this.events.emit('call', call);
      return call;
    };
    if (token !== this.token || this.revoked) {
      const body = apiError(401, 'Unauthorized');
      record(401, body);
      return this.reply(res, 401, body);
    }
    const failure = this.failures.get(method)?.shift();
    if (failure) {
      const body: JsonObject = { ok: false, ...(failure as unknown as JsonObject) };
      record(failure.error_code, body);
      return this.reply(res, failure.error_code, body);
    }
    if (method === 'getUpdates') return this.getUpdates(params, req, res, record);
    const outcome = await this.handle(method, params, files);
    const body: JsonObject = outcome.ok ? { ok: true, result: outcome.result } : { ok: false, ...(outcome.error as unknown as JsonObject) };
    const status = outcome.ok ? 200 : outcome.error.error_code;
    const call = record(status, body);
    if (this.latencyMs > 0) await new Promise((resolve) => setTimeout(resolve, this.latencyMs));
    // The client gave up or died while the answer was on its way.
    if (res.destroyed || !res.socket || res.socket.destroyed) return;
    this.reply(res, status, body);
    call.answeredAt = Date.now();
  }

  private getUpdates(
    params: JsonObject,
    req: IncomingMessage,
    res: ServerResponse,
    record: (status: number, response: JsonObject) => void,
  ): void {
    const offset = typeof params.offset === 'number' ? params.offset : Number(params.offset ?? 0);
    const limit = Math.max(1, Math.min(100, Number(params.limit ?? 100)));
    const timeoutSeconds = Math.max(0, Number(params.timeout ?? 0));
    if (params.allowed_updates !== undefined) this.allowedUpdates.push(params.allowed_updates);
    // Updates below the offset are confirmed: Telegram forgets them.
    this.confirm(offset);
    const answer = (updates: JsonObject[]) => {
      const body: JsonObject = { ok: true, result: updates };
      record(200, body);
      if (!res.writableEnded && !res.destroyed) this.reply(res, 200, body);
    };
    // Telegram allows one getUpdates per token at a time: a newer call ends a pending one with
    // 409 Conflict ("terminated by other getUpdates request"), whichever instance made it.
    for (const older of [...this.polls]) {
      this.polls.delete(older);
      older.fail(apiError(409, ERRORS.conflict().description));
    }
    const ready = this.take(offset, limit);
    if (ready.length > 0 || timeoutSeconds === 0) return answer(ready);
    const poll: PendingPoll = {
      offset,
      limit,
      respond: (updates) => {
        clearTimeout(timer);
        answer(updates);
      },
      fail: (body) => {
        clearTimeout(timer);
        record(Number(body.error_code), body);
        if (!res.writableEnded && !res.destroyed) this.reply(res, Number(body.error_code), body);
      },
    };
    const timer = setTimeout(() => {
      this.polls.delete(poll);
      answer([]);
    }, timeoutSeconds * 1000);
    this.polls.add(poll);
    this.events.emit('poll');
    // A poll its client gave up on (runner.stop()) is gone: nothing is answered to it later.
    res.on('close', () => {
      if (!res.writableEnded) {
        clearTimeout(timer);
        this.polls.delete(poll);
      }
    });
    void req;
  }

  private confirm(offset: number): void {
    while (this.updates.length > 0 && Number(this.updates[0]?.update_id) < offset) this.updates.shift();
  }

  private take(offset: number, limit: number): JsonObject[] {
    return this.updates.filter((u) => Number(u.update_id) >= offset).slice(0, limit);
  }

  private async handle(
    method: string,
    params: JsonObject,
    files: Record<string, UploadedFile>,
  ): Promise<{ ok: true; result: Json } | { ok: false; error: ApiErrorSpec }> {
    switch (method) {
      case 'getMe':
        return { ok: true, result: { ...this.bot, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false } };
      case 'deleteWebhook':
      case 'setMyCommands':
      case 'sendChatAction':
      case 'answerCallbackQuery':
      case 'setMessageReaction':
        return { ok: true, result: true };
      case 'sendMessage': {
        const text = messageText(params);
        if (!text.ok) return text;
        return { ok: true, result: this.store(params, text.content) };
      }
      case 'editMessageText': {
        const existing = this.messages.get(key(Number(params.chat_id), Number(params.message_id)));
        if (!existing) return { ok: false, error: { error_code: 400, description: 'Bad Request: message to edit not found' } };
        const text = messageText(params);
        if (!text.ok) return text;
        const markup = params.reply_markup ?? null;
        if (existing.text === text.content.text && JSON.stringify(existing.reply_markup ?? null) === JSON.stringify(markup)) {
          return { ok: false, error: ERRORS.notModified() };
        }
        existing.text = text.content.text;
        if (text.content.entities) existing.entities = text.content.entities;
        else delete existing.entities;
        existing.edit_date = Math.floor(Date.now() / 1000);
        if (params.reply_markup !== undefined) existing.reply_markup = params.reply_markup;
        return { ok: true, result: existing };
      }
      case 'deleteMessage': {
        const k = key(Number(params.chat_id), Number(params.message_id));
        if (!this.messages.delete(k)) return { ok: false, error: { error_code: 400, description: 'Bad Request: message to delete not found' } };
        return { ok: true, result: true };
      }
      case 'sendPhoto': {
        const file = files.photo;
        if (!file) return { ok: false, error: { error_code: 400, description: 'Bad Request: there is no photo in the request' } };
        const meta = await sharp(file.data).metadata().catch(() => undefined);
        if (!meta?.width || !meta.height) return { ok: false, error: { error_code: 400, description: 'Bad Request: IMAGE_PROCESS_FAILED' } };
        const photo: JsonObject = { file_id: `photo${this.seq}`, file_unique_id: `p${this.seq}`, width: meta.width, height: meta.height, file_size: file.data.length };
        return { ok: true, result: this.store(params, { photo: [photo], ...(params.caption !== undefined ? { caption: params.caption } : {}) }) };
      }
      case 'sendDocument': {
        const file = files.document;
        if (!file) return { ok: false, error: { error_code: 400, description: 'Bad Request: there is no document in the request' } };
        const document: JsonObject = { file_id: `doc${this.seq}`, file_unique_id: `d${this.seq}`, file_name: file.filename, mime_type: 'image/png', file_size: file.data.length };
        return { ok: true, result: this.store(params, { document, ...(params.caption !== undefined ? { caption: params.caption } : {}) }) };
      }
      default:
        return { ok: false, error: { error_code: 404, description: 'Not Found: method not found' } };
    }
  }

  /** Records a message the bot sent and returns it as Telegram would. */
  private store(params: JsonObject, content: JsonObject): TgMessage {
    const chatId = Number(params.chat_id);
    const chat: TgChat = chatId > 0 ? { id: chatId, type: 'private', first_name: 'Member' } : { id: chatId, type: 'supergroup', title: 'Club' };
    const message: TgMessage = {
      message_id: this.nextMessageId++,
      date: Math.floor(Date.now() / 1000),
      chat,
      from: this.bot,
      ...content,
    };
    if (params.reply_markup !== undefined) message.reply_markup = params.reply_markup;
    const replyTo = params.reply_parameters;
    if (replyTo && typeof replyTo === 'object' && !Array.isArray(replyTo)) {
      const original = this.messages.get(key(chatId, Number(replyTo.message_id)));
      if (original) message.reply_to_message = original;
    }
    this.messages.set(key(chatId, message.message_id), message);
    return message;
  }

  private reply(res: ServerResponse, status: number, body: JsonObject): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
}

/** Telegram's text message limit, counted after the markup is parsed (UTF-16 units). */
export const MESSAGE_TEXT_LIMIT = 4096;

type TextOutcome = { ok: true; content: { text: string; entities?: JsonObject[] } } | { ok: false; error: ApiErrorSpec };

/** The text a sendMessage/editMessageText stores: parse_mode HTML parsed as Telegram does, limits checked. */
function messageText(params: JsonObject): TextOutcome {
  const raw = String(params.text ?? '');
  let content: { text: string; entities?: JsonObject[] } = { text: raw };
  if (params.parse_mode === 'HTML') {
    const parsed = parseHtml(raw);
    if ('error' in parsed) return { ok: false, error: { error_code: 400, description: `Bad Request: can't parse entities: ${parsed.error}` } };
    content = parsed.entities.length > 0 ? parsed : { text: parsed.text };
  } else if (params.parse_mode !== undefined) {
    return { ok: false, error: { error_code: 400, description: `Bad Request: unsupported parse_mode in this fake: ${String(params.parse_mode)}` } };
  }
  if (content.text.trim().length === 0) return { ok: false, error: { error_code: 400, description: 'Bad Request: message text is empty' } };
  if (content.text.length > MESSAGE_TEXT_LIMIT) return { ok: false, error: { error_code: 400, description: 'Bad Request: message is too long' } };
  return { ok: true, content };
}

const HTML_TAGS: Record<string, string> = {
  b: 'bold', strong: 'bold', i: 'italic', em: 'italic', u: 'underline', ins: 'underline',
  s: 'strikethrough', strike: 'strikethrough', del: 'strikethrough', code: 'code', pre: 'pre', 'tg-spoiler': 'spoiler', blockquote: 'blockquote',
};
const HTML_ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"' };

/**
 * Telegram's HTML mode, for the tags this bot may use: text and entities (UTF-16 offsets), or the
 * error Telegram gives for an unknown tag, a bare `<`, or tags that do not match.
 */
export function parseHtml(html: string): { text: string; entities: JsonObject[] } | { error: string } {
  let text = '';
  const entities: JsonObject[] = [];
  const open: { tag: string; offset: number }[] = [];
  for (let i = 0; i < html.length; ) {
    const ch = html[i];
    if (ch === '<') {
      const m = /^<(\/?)([a-z-]+)(\s[^<>]*)?>/.exec(html.slice(i));
      const tag = m?.[2];
      if (!m || tag === undefined || !(tag in HTML_TAGS)) return { error: `Unsupported start tag at byte offset ${Buffer.byteLength(html.slice(0, i))}` };
      if (m[1]) {
        const top = open.pop();
        if (!top || top.tag !== tag) return { error: `Unmatched end tag at byte offset ${Buffer.byteLength(html.slice(0, i))}, expected "</${top?.tag ?? ''}>", found "</${tag}>"` };
        if (text.length > top.offset) entities.push({ type: HTML_TAGS[tag] ?? tag, offset: top.offset, length: text.length - top.offset });
      } else open.push({ tag, offset: text.length });
      i += m[0].length;
      continue;
    }
    if (ch === '&') {
      const m = /^&(#\d+|[a-z]+);/.exec(html.slice(i));
      const name = m?.[1];
      if (m && name !== undefined) {
        const decoded = name.startsWith('#') ? String.fromCodePoint(Number(name.slice(1))) : HTML_ENTITIES[name];
        if (decoded === undefined) return { error: `Unknown entity "&${name};"` };
        text += decoded;
        i += m[0].length;
        continue;
      }
    }
    text += ch;
    i += 1;
  }
  if (open.length > 0) return { error: `Can't find end tag corresponding to start tag "${open.at(-1)?.tag ?? ''}"` };
  return { text, entities: entities.sort((a, b) => Number(a.offset) - Number(b.offset)) };
}

function key(chatId: number, messageId: number): string {
  return `${chatId}:${messageId}`;
}

function apiError(code: number, description: string): JsonObject {
  return { ok: false, error_code: code, description };
}

/** bot_command at the start and @mentions, with UTF-16 offsets as Telegram counts them. */
export function textEntities(text: string): JsonObject[] {
  const entities: JsonObject[] = [];
  const command = /^\/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?/.exec(text);
  if (command) entities.push({ type: 'bot_command', offset: 0, length: command[0].length });
  for (const m of text.matchAll(/(^|[^A-Za-z0-9_/])(@[A-Za-z0-9_]{5,32})/g)) {
    entities.push({ type: 'mention', offset: (m.index ?? 0) + (m[1]?.length ?? 0), length: m[2]?.length ?? 0 });
  }
  return entities;
}

async function readBody(req: IncomingMessage): Promise<{ params: JsonObject; files: Record<string, UploadedFile> }> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/form-data')) return readMultipart(req);
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (!raw) return { params: {}, files: {} };
  const parsed = JSON.parse(raw) as Json;
  return { params: parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed : {}, files: {} };
}

function readMultipart(req: IncomingMessage): Promise<{ params: JsonObject; files: Record<string, UploadedFile> }> {
  return new Promise((resolve, reject) => {
    const params: JsonObject = {};
    const parts = new Map<string, UploadedFile>();
    const parser = busboy({ headers: req.headers });
    parser.on('field', (name, value) => {
      params[name] = /^[[{]/.test(value) ? (JSON.parse(value) as Json) : value;
    });
    parser.on('file', (name, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => parts.set(name, { filename: info.filename ?? '', mimeType: info.mimeType, data: Buffer.concat(chunks) }));
    });
    parser.on('error', reject);
    parser.on('close', () => {
      // grammY names the file part by a random id and puts `attach://<id>` in the field.
      const files: Record<string, UploadedFile> = {};
      for (const [field, value] of Object.entries(params)) {
        if (typeof value !== 'string' || !value.startsWith('attach://')) continue;
        const file = parts.get(value.slice('attach://'.length));
        if (file) files[field] = file;
      }
      resolve({ params, files });
    });
    req.pipe(parser);
  });
}
