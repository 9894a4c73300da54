// A fake Discord on 127.0.0.1 for end-to-end tests with the real discord.js client: the REST
// routes the bot uses (under /api/v10) and a WebSocket gateway. It records everything the bot
// sends so tests can assert on the wire, and injects faults on demand (429, 401/50027, 10062…).
// It keeps Discord's rules too: the 3-second first response, the 15-minute token, the first
// follow-up that replaces a loading deferral, message and component limits (50035), upload
// size (413/40005), channel permissions (50001/50013) and rate limits with their headers.
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeGateway } from './gateway.js';
import { readBody, type UploadedFile } from './multipart.js';
import {
  channelJson,
  EVERYONE_PERMISSIONS,
  guildCreateJson,
  memberJson,
  messageJson,
  snowflake,
  userJson,
  type FakeIds,
  type FakeUser,
  type Overwrite,
  type StoredMessage,
} from './payloads.js';
import { checkChannelPermission, checkChoices, checkMessageBody, checkUploadSize, guildUploadLimit, RateLimiter, type Refusal } from './rules.js';

export { snowflake, type FakeUser, type StoredMessage } from './payloads.js';
export { PERM, guildUploadLimit } from './rules.js';
export type { UploadedFile } from './multipart.js';

export interface RecordedRequest {
  seq: number;
  at: number;
  method: string;
  /** Path below /api/v10, e.g. /webhooks/1/tok/messages/@original. */
  path: string;
  /** The matched route, e.g. `PATCH /webhooks/:app/:token/messages/:message`; `unknown` when none matched. */
  route: string;
  params: Record<string, string>;
  /** JSON body, or the parsed payload_json of a multipart body. */
  body: Record<string, unknown> | undefined;
  files: UploadedFile[];
  authorization: string | undefined;
  /** Status the fake answered. */
  status: number;
  /** The JSON it answered with (a created message's id, an error's code). */
  response: unknown;
}

export interface FaultRule {
  /** Route name as in RecordedRequest.route, e.g. `PATCH /webhooks/:app/:token/messages/:message`. */
  route: string;
  status: number;
  code?: number;
  message?: string;
  /** Seconds, sent as Retry-After and retry_after for 429s. */
  retryAfter?: number;
  /** How many matching requests fail (default 1). */
  times?: number;
  /** Only requests whose path contains this string. */
  pathIncludes?: string;
  /** Only requests that upload files (a result, not a status message). */
  withFiles?: boolean;
}

export interface FakeDiscordOptions {
  token?: string;
  heartbeatIntervalMs?: number;
  /** Role ids the guild lists (member roles outside this list are dropped by discord.js). */
  roles?: string[];
  /** More text channels in the guild besides the default one. */
  extraChannels?: string[];
  /** Discord's 3 s for the first response to an interaction (tests may shorten it). */
  initialResponseMs?: number;
  /** An interaction token's life, 15 minutes on Discord (tests may shorten it). */
  tokenLifetimeMs?: number;
  /** The guild's boost tier: 0–3 (upload limit 10/10/50/100 MiB per file for bot messages). */
  premiumTier?: number;
  /** Requests per bucket (a channel, a webhook token) per window; Discord's are tighter. */
  rateLimit?: { perWindow: number; windowMs: number };
}

interface InteractionRecord {
  id: string;
  token: string;
  appId: string;
  channelId: string;
  /** For component interactions: the message that carries the component. */
  messageId?: string;
  dispatchedAt: number;
  /** When Discord created it (the snowflake's time): the token's 15 minutes count from here. */
  createdAt: number;
  attachmentSizeLimit: number;
  acked: boolean;
  originalId?: string;
}

export interface InteractionUserOptions {
  user?: FakeUser;
  roles?: string[];
  channelId?: string;
  /** false: a DM interaction (no guild, no member). */
  inGuild?: boolean;
  appPermissions?: string;
  attachmentSizeLimit?: number;
  /** When the interaction was created (goes into the snowflake). */
  createdAt?: number;
}

export interface DispatchedInteraction {
  id: string;
  token: string;
  seq: number;
  dispatchedAt: number;
  /** The raw payload, to dispatch it again (a gateway replay). */
  payload: Record<string, unknown>;
}

type Handler = (ctx: RouteContext) => { status: number; json?: unknown; headers?: Record<string, string> };

interface RouteContext {
  params: Record<string, string>;
  body: Record<string, unknown> | undefined;
  files: UploadedFile[];
}

interface Route {
  method: string;
  pattern: string;
  regex: RegExp;
  keys: string[];
  handler: Handler;
}

export const ALL_PERMISSIONS = '2251799813685247';
/** Every permission but ATTACH_FILES (1 << 15) and ADMINISTRATOR (1 << 3, which implies it). */
export const NO_ATTACH_PERMISSIONS = (BigInt(ALL_PERMISSIONS) & ~(1n << 15n) & ~(1n << 3n)).toString();

export class FakeDiscord {
  readonly token: string;
  readonly ids: FakeIds;
  readonly member: FakeUser = { id: '555555555555555555', username: 'alice' };
  readonly requests: RecordedRequest[] = [];
  readonly messages = new Map<string, StoredMessage>();
  readonly interactions = new Map<string, InteractionRecord>();
  readonly expiredTokens = new Set<string>();
  readonly commands = new Map<string, unknown[]>();
  readonly gateway: FakeGateway;
  readonly #server: Server;
  readonly #routes: Route[] = [];
  readonly #faults: (FaultRule & { left: number })[] = [];
  readonly #events = new EventEmitter();
  readonly #initialResponseMs: number;
  readonly #tokenLifetimeMs: number;
  readonly #rateLimiter: RateLimiter;
  /** The bot's permissions per channel (absent: everything but Administrator). */
  readonly #botPermissions = new Map<string, bigint>();
  readonly #channels: string[];
  /** Members whose DMs are closed to the bot (50007). */
  readonly closedDMs = new Set<string>();
  premiumTier: number;
  #port = 0;

  constructor(opts: FakeDiscordOptions = {}) {
    this.token = opts.token ?? 'MTExMTExMTExMTExMTExMTEx.fake.token-for-tests';
    this.ids = {
      appId: '111111111111111111',
      botUser: { id: '111111111111111111', username: 'imagine-bot', bot: true },
      guildId: '222222222222222222',
      channelId: '333333333333333333',
      roles: opts.roles ?? ['666666666666666666'],
    };
    this.#events.setMaxListeners(100);
    this.#initialResponseMs = opts.initialResponseMs ?? 3_000;
    this.#tokenLifetimeMs = opts.tokenLifetimeMs ?? 15 * 60_000;
    this.premiumTier = opts.premiumTier ?? 0;
    this.#rateLimiter = new RateLimiter({ ...(opts.rateLimit ?? { perWindow: 50, windowMs: 1_000 }), now: Date.now });
    this.#channels = [this.ids.channelId, ...(opts.extraChannels ?? [])];
    this.gateway = new FakeGateway({
      token: this.token,
      ids: this.ids,
      heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 1000,
      guild: () => guildCreateJson(this.ids, this.#channels.map((id) => ({ id, overwrites: this.#overwrites(id) })), this.premiumTier),
      url: () => `ws://127.0.0.1:${this.#port}/gateway`,
    });
    this.#server = createServer((req, res) => void this.#onRequest(req, res));
    this.#server.on('upgrade', (req, socket, head) => this.gateway.handleUpgrade(req, socket, head));
    this.#defineRoutes();
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.#port}/api`;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.#port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  async close(): Promise<void> {
    this.gateway.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- fault injection ----

  fail(rule: FaultRule): void {
    this.#faults.push({ ...rule, left: rule.times ?? 1 });
  }

  /** Discord is well again: faults not yet used up are dropped. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Every later webhook call with this token answers 401 / 50027, as Discord does after 15 minutes. */
  expireToken(token: string): void {
    this.expiredTokens.add(token);
  }

  /** Every bot request (not interaction callbacks or webhooks) answers a global 429 for this long. */
  globalRateLimit(seconds: number): void {
    this.#rateLimiter.blockGlobally(seconds);
  }

  // ---- permissions ----

  /** The bot's permissions in a channel; also sent to the client (CHANNEL_UPDATE) as Discord would. */
  setBotPermissions(channelId: string, bits: bigint): void {
    this.#botPermissions.set(channelId, bits);
    if (this.gateway.connected) this.gateway.dispatch('CHANNEL_UPDATE', channelJson(this.ids, channelId, this.#overwrites(channelId)));
  }

  botPermissions(channelId: string): bigint {
    return this.#botPermissions.get(channelId) ?? BigInt(EVERYONE_PERMISSIONS);
  }

  /** A member overwrite that leaves the bot exactly the permissions set for this channel. */
  #overwrites(channelId: string): Overwrite[] {
    const bits = this.#botPermissions.get(channelId);
    if (bits === undefined) return [];
    const all = BigInt(EVERYONE_PERMISSIONS);
    return [{ id: this.ids.botUser.id, type: 1, allow: (bits & all).toString(), deny: (all & ~bits).toString() }];
  }

  // ---- what the bot sent ----

  routeRequests(route: string): RecordedRequest[] {
    return this.requests.filter((r) => r.route === route);
  }

  /** Resolves with the first recorded request (past or future) that matches. */
  waitForRequest(match: (r: RecordedRequest) => boolean, timeoutMs = 30_000, what = 'a matching request'): Promise<RecordedRequest> {
    const found = this.requests.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onRequest = (r: RecordedRequest) => {
        if (!match(r)) return;
        clearTimeout(timer);
        this.#events.off('request', onRequest);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.#events.off('request', onRequest);
        const seen = this.requests.map((r) => `${r.route} → ${r.status}`).join('\n  ');
        reject(new Error(`fake discord: timed out waiting for ${what}; requests so far:\n  ${seen}`));
      }, timeoutMs);
      this.#events.on('request', onRequest);
    });
  }

  // ---- gateway dispatch helpers ----

  /** INTERACTION_CREATE for a chat-input command. */
  slashCommand(name: string, options: Record<string, string | number | boolean> = {}, who: InteractionUserOptions = {}): DispatchedInteraction {
    const data = {
      id: '888888888888888888',
      name,
      type: 1,
      options: Object.entries(options).map(([optName, value]) => ({ name: optName, type: optionType(value), value })),
    };
    return this.#dispatchInteraction(2, data, who);
  }

  /** INTERACTION_CREATE for an option being typed (APPLICATION_COMMAND_AUTOCOMPLETE). */
  autocomplete(name: string, option: string, typed: string, who: InteractionUserOptions = {}): DispatchedInteraction {
    const data = { id: '888888888888888888', name, type: 1, options: [{ name: option, type: 3, value: typed, focused: true }] };
    return this.#dispatchInteraction(4, data, who);
  }

  /** INTERACTION_CREATE for a button press on a message the fake stores. */
  buttonPress(customId: string, messageId: string, who: InteractionUserOptions = {}): DispatchedInteraction {
    const message = this.messages.get(messageId);
    if (!message) throw new Error(`fake discord: no message ${messageId}`);
    return this.#dispatchInteraction(3, { custom_id: customId, component_type: 2 }, { ...who, channelId: message.channelId }, message);
  }

  /** Dispatch a recorded interaction payload again (what a gateway replay looks like to the bot). */
  redispatch(i: DispatchedInteraction): number {
    return this.gateway.dispatch('INTERACTION_CREATE', i.payload);
  }

  reactionAdd(messageId: string, emoji: string, who: { user?: FakeUser; roles?: string[]; channelId?: string } = {}): number {
    const user = who.user ?? this.member;
    const channelId = who.channelId ?? this.messages.get(messageId)?.channelId ?? this.ids.channelId;
    return this.gateway.dispatch('MESSAGE_REACTION_ADD', {
      user_id: user.id,
      channel_id: channelId,
      message_id: messageId,
      guild_id: this.ids.guildId,
      member: memberJson(user, who.roles ?? []),
      emoji: { id: null, name: emoji },
      burst: false,
      type: 0,
      message_author_id: this.ids.botUser.id,
    });
  }

  reactionRemove(messageId: string, emoji: string, who: { user?: FakeUser; channelId?: string } = {}): number {
    const user = who.user ?? this.member;
    return this.gateway.dispatch('MESSAGE_REACTION_REMOVE', {
      user_id: user.id,
      channel_id: who.channelId ?? this.messages.get(messageId)?.channelId ?? this.ids.channelId,
      message_id: messageId,
      guild_id: this.ids.guildId,
      emoji: { id: null, name: emoji },
      burst: false,
      type: 0,
    });
  }

  /** The message an interaction's deferral created (its @original). */
  originalMessage(interactionId: string): StoredMessage | undefined {
    const rec = this.interactions.get(interactionId);
    return rec?.originalId ? this.messages.get(rec.originalId) : undefined;
  }

  #dispatchInteraction(type: number, data: unknown, who: InteractionUserOptions, message?: StoredMessage): DispatchedInteraction {
    const createdAt = who.createdAt ?? Date.now();
    const id = snowflake(createdAt);
    const token = `itok-${id}-${Math.random().toString(36).slice(2, 10)}`;
    const user = who.user ?? this.member;
    const inGuild = who.inGuild ?? true;
    const channelId = who.channelId ?? this.ids.channelId;
    const payload: Record<string, unknown> = {
      id,
      application_id: this.ids.appId,
      type,
      data,
      token,
      version: 1,
      app_permissions: who.appPermissions ?? (inGuild ? this.botPermissions(channelId).toString() : ALL_PERMISSIONS),
      locale: 'en-US',
      entitlements: [],
      attachment_size_limit: who.attachmentSizeLimit ?? 10 * 1024 * 1024,
      ...(inGuild
        ? {
            guild_id: this.ids.guildId,
            channel_id: channelId,
            channel: channelJson(this.ids, channelId),
            member: memberJson(user, who.roles ?? []),
            guild_locale: 'en-US',
            authorizing_integration_owners: { '0': this.ids.guildId },
            context: 0,
          }
        : {
            channel_id: channelId,
            channel: { id: channelId, type: 1, recipients: [userJson(user)] },
            user: userJson(user),
            authorizing_integration_owners: { '0': this.ids.guildId },
            context: 1,
          }),
      ...(message ? { message: messageJson(this.ids, message) } : {}),
    };
    const dispatchedAt = Date.now();
    this.interactions.set(id, {
      id,
      token,
      appId: this.ids.appId,
      channelId,
      messageId: message?.id,
      dispatchedAt,
      createdAt,
      attachmentSizeLimit: Number(payload.attachment_size_limit),
      acked: false,
    });
    const seq = this.gateway.dispatch('INTERACTION_CREATE', payload);
    return { id, token, seq, dispatchedAt, payload };
  }

  // ---- REST ----

  async #onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const prefix = '/api/v10';
    const path = url.pathname.startsWith(prefix) ? url.pathname.slice(prefix.length) : url.pathname;
    const method = req.method ?? 'GET';
    let parsed;
    try {
      parsed = await readBody(req);
    } catch {
      parsed = { json: undefined, files: [], multipart: false };
    }
    const body = parsed.json && typeof parsed.json === 'object' ? (parsed.json as Record<string, unknown>) : undefined;

    let routeName = 'unknown';
    let params: Record<string, string> = {};
    let status = 404;
    let json: unknown = { message: '404: Not Found', code: 0 };
    let headers: Record<string, string> = {};
    for (const route of this.#routes) {
      if (route.method !== method) continue;
      const m = route.regex.exec(path);
      if (!m) continue;
      routeName = `${route.method} ${route.pattern}`;
      params = Object.fromEntries(route.keys.map((k, i) => [k, decodeURIComponent(m[i + 1] ?? '')]));
      const fault = this.#takeFault(routeName, path, parsed.files.length > 0);
      const limited = fault ? undefined : this.#rateLimiter.take(bucketOf(route.pattern, params), route.pattern.startsWith('/interactions/') || route.pattern.startsWith('/webhooks/'));
      if (limited) headers = limited.headers;
      if (limited?.refusal) {
        ({ status, json } = limited.refusal);
        headers = limited.refusal.headers ?? {};
      } else if (fault) {
        status = fault.status;
        json = { message: fault.message ?? `injected ${fault.status}`, code: fault.code ?? 0 };
        if (fault.status === 429) {
          const retryAfter = fault.retryAfter ?? 1;
          json = { message: 'You are being rate limited.', retry_after: retryAfter, global: false };
          headers = { 'retry-after': String(retryAfter), 'x-ratelimit-scope': 'user' };
        }
      } else {
        const answer = route.handler({ params, body, files: parsed.files });
        ({ status, json } = answer);
        headers = { ...headers, ...(answer.headers ?? {}) };
      }
      break;
    }
    const recorded: RecordedRequest = {
      seq: this.requests.length + 1,
      at: Date.now(),
      method,
      path,
      route: routeName,
      params,
      body,
      files: parsed.files,
      authorization: req.headers.authorization,
      status,
      response: json,
    };
    this.requests.push(recorded);
    if (status === 204) {
      // Discord answers interaction callbacks with 204 and no content type; @discordjs/rest then
      // reads an empty ArrayBuffer instead of trying to parse JSON.
      res.writeHead(204, headers);
      res.end();
    } else {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(json));
    }
    this.#events.emit('request', recorded);
  }

  #takeFault(route: string, path: string, hasFiles: boolean): FaultRule | undefined {
    const i = this.#faults.findIndex(
      (f) => f.route === route && (!f.pathIncludes || path.includes(f.pathIncludes)) && (f.withFiles === undefined || f.withFiles === hasFiles),
    );
    if (i < 0) return undefined;
    const fault = this.#faults[i]!;
    if (--fault.left <= 0) this.#faults.splice(i, 1);
    return fault;
  }

  #route(method: string, pattern: string, handler: Handler): void {
    const keys: string[] = [];
    const source = pattern
      .split('/')
      .map((part) => {
        if (!part.startsWith(':')) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        keys.push(part.slice(1));
        return '([^/]+)';
      })
      .join('/');
    this.#routes.push({ method, pattern, regex: new RegExp(`^${source}/?$`), keys, handler });
  }

  #defineRoutes(): void {
    const ok = (json: unknown) => ({ status: 200, json });
    const noContent = { status: 204 };
    const unknownMessage = { status: 404, json: { message: 'Unknown Message', code: 10008 } };
    const invalidWebhookToken = { status: 401, json: { message: 'Invalid Webhook Token', code: 50027 } };
    const unknownWebhook = { status: 404, json: { message: 'Unknown Webhook', code: 10015 } };

    this.#route('GET', '/gateway/bot', () =>
      ok({
        url: `ws://127.0.0.1:${this.#port}/gateway`,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
      }),
    );
    this.#route('GET', '/users/@me', () => ok({ ...userJson(this.ids.botUser), bot: true }));
    this.#route('GET', '/applications/@me', () => ok({ id: this.ids.appId, name: 'imagine', flags: 0, bot_public: false }));
    const putCommands = (key: string, body: unknown) => {
      const list = Array.isArray(body) ? body : [];
      this.commands.set(key, list);
      return ok(list.map((c: unknown) => ({ ...(c as object), id: snowflake(), application_id: this.ids.appId, version: snowflake() })));
    };
    this.#route('PUT', '/applications/:app/commands', ({ body }) => putCommands('global', body));
    this.#route('PUT', '/applications/:app/guilds/:guild/commands', ({ params, body }) => putCommands(`guild:${params.guild}`, body));

    this.#route('POST', '/interactions/:id/:token/callback', ({ params, body }) => {
      const rec = this.interactions.get(params.id ?? '');
      // Past 3 s without a response the interaction is gone for good (the member sees "The
      // application did not respond").
      const late = rec ? Date.now() - rec.dispatchedAt > this.#initialResponseMs : false;
      if (!rec || rec.token !== params.token || this.#tokenExpired(rec) || late) {
        return { status: 404, json: { message: 'Unknown interaction', code: 10062 } };
      }
      if (rec.acked) return { status: 400, json: { message: 'Interaction has already been acknowledged.', code: 40060 } };
      const type = Number(body?.type);
      const data = (body?.data ?? {}) as Record<string, unknown>;
      const invalid = type === 4 || type === 7 ? checkMessageBody(data) : type === 8 ? checkChoices(data) : undefined;
      if (invalid) return invalid;
      rec.acked = true;
      if (type === 4 || type === 5) {
        const msg = this.#newMessage(rec.channelId, {
          content: type === 4 ? String(data.content ?? '') : '',
          components: Array.isArray(data.components) ? data.components : [],
          flags: Number(data.flags ?? 0) | (type === 5 ? 128 : 0),
          type: 20,
          webhookId: rec.appId,
          interactionToken: rec.token,
        });
        rec.originalId = msg.id;
      } else if (type === 7 && rec.messageId) {
        this.#editMessage(rec.messageId, data, []);
      }
      return noContent;
    });

    /** The interaction a webhook token belongs to, or why the call fails. */
    const webhookToken = (params: Record<string, string>): InteractionRecord | Refusal => {
      const token = params.token ?? '';
      const rec = [...this.interactions.values()].find((i) => i.token === token);
      if (this.expiredTokens.has(token) || (rec && this.#tokenExpired(rec))) return invalidWebhookToken;
      // A webhook exists only once the interaction was answered.
      if (!rec || !rec.acked) return unknownWebhook;
      return rec;
    };
    const isRefusal = (x: InteractionRecord | Refusal): x is Refusal => 'status' in x;
    const webhookMessageId = (rec: InteractionRecord, messageParam: string | undefined) =>
      messageParam === '@original' ? rec.originalId : messageParam;
    const webhookChecks = (rec: InteractionRecord, body: Record<string, unknown> | undefined, files: UploadedFile[]) =>
      checkMessageBody(body) ?? checkUploadSize(files, rec.attachmentSizeLimit);

    this.#route('PATCH', '/webhooks/:app/:token/messages/:message', ({ params, body, files }) => {
      const rec = webhookToken(params);
      if (isRefusal(rec)) return rec;
      const refused = webhookChecks(rec, body, files);
      if (refused) return refused;
      const id = webhookMessageId(rec, params.message);
      const msg = id ? this.#editMessage(id, body ?? {}, files) : undefined;
      return msg ? ok(messageJson(this.ids, msg)) : unknownMessage;
    });
    this.#route('GET', '/webhooks/:app/:token/messages/:message', ({ params }) => {
      const rec = webhookToken(params);
      if (isRefusal(rec)) return rec;
      const id = webhookMessageId(rec, params.message);
      const msg = id ? this.messages.get(id) : undefined;
      return msg && !msg.deleted ? ok(messageJson(this.ids, msg)) : unknownMessage;
    });
    this.#route('DELETE', '/webhooks/:app/:token/messages/:message', ({ params }) => {
      const rec = webhookToken(params);
      if (isRefusal(rec)) return rec;
      const id = webhookMessageId(rec, params.message);
      const msg = id ? this.messages.get(id) : undefined;
      if (!msg || msg.deleted) return unknownMessage;
      msg.deleted = true;
      return noContent;
    });
    this.#route('POST', '/webhooks/:app/:token', ({ params, body, files }) => {
      const rec = webhookToken(params);
      if (isRefusal(rec)) return rec;
      const refused = webhookChecks(rec, body, files);
      if (refused) return refused;
      // Discord's rule: while the deferred reply still shows "thinking…", the first follow-up
      // becomes that reply — public or private as the deferral was, whatever its own flags say.
      const original = rec.originalId ? this.messages.get(rec.originalId) : undefined;
      if (original && !original.deleted && (original.flags & 128) !== 0) {
        this.#editMessage(original.id, body ?? {}, files);
        original.mentions = mentionsIn(body);
        return ok(messageJson(this.ids, original));
      }
      const msg = this.#newMessage(rec.channelId, { type: 0, webhookId: rec.appId, flags: Number(body?.flags ?? 0) & 64 });
      this.#editMessage(msg.id, body ?? {}, files, false);
      msg.mentions = mentionsIn(body);
      return ok(messageJson(this.ids, msg));
    });

    this.#route('POST', '/users/@me/channels', ({ body }) => {
      const recipient = String(body?.recipient_id ?? '');
      if (!/^\d{17,20}$/.test(recipient)) return { status: 400, json: { message: 'Invalid Form Body', code: 50035 } };
      return ok({ id: dmChannelId(recipient), type: 1, recipients: [{ id: recipient, username: 'member' }] });
    });
    this.#route('POST', '/channels/:channel/messages', ({ params, body, files }) => {
      const channelId = params.channel ?? '';
      const reply = body?.message_reference !== undefined;
      const dmTo = dmRecipient(channelId);
      if (dmTo !== undefined) {
        if (this.closedDMs.has(dmTo)) return { status: 403, json: { message: 'Cannot send messages to this user', code: 50007 } };
      } else {
        const denied = checkChannelPermission(this.botPermissions(channelId), 'send', { files: files.length > 0, reply });
        if (denied) return denied;
      }
      const refused = checkMessageBody(body) ?? checkUploadSize(files, guildUploadLimit(this.premiumTier));
      if (refused) return refused;
      const msg = this.#newMessage(channelId, { type: reply ? 19 : 0, flags: 0 });
      this.#editMessage(msg.id, body ?? {}, files, false);
      msg.mentions = mentionsIn(body);
      return ok(messageJson(this.ids, msg));
    });
    this.#route('GET', '/channels/:channel/messages/:message', ({ params }) => {
      const denied = checkChannelPermission(this.botPermissions(params.channel ?? ''), 'read');
      if (denied) return denied;
      const msg = this.messages.get(params.message ?? '');
      return msg && !msg.deleted && msg.channelId === params.channel ? ok(messageJson(this.ids, msg)) : unknownMessage;
    });
    this.#route('PATCH', '/channels/:channel/messages/:message', ({ params, body, files }) => {
      const denied = checkChannelPermission(this.botPermissions(params.channel ?? ''), 'edit', { files: files.length > 0 });
      if (denied) return denied;
      const msg = this.messages.get(params.message ?? '');
      if (!msg || msg.deleted || msg.channelId !== params.channel) return unknownMessage;
      const refused = checkMessageBody(body) ?? checkUploadSize(files, guildUploadLimit(this.premiumTier));
      if (refused) return refused;
      return ok(messageJson(this.ids, this.#editMessage(msg.id, body ?? {}, files)!));
    });
    this.#route('DELETE', '/channels/:channel/messages/:message', ({ params }) => {
      const denied = checkChannelPermission(this.botPermissions(params.channel ?? ''), 'delete');
      if (denied) return denied;
      const msg = this.messages.get(params.message ?? '');
      if (!msg || msg.deleted) return unknownMessage;
      msg.deleted = true;
      return noContent;
    });
    this.#route('PUT', '/channels/:channel/messages/:message/reactions/:emoji/@me', ({ params }) => {
      return checkChannelPermission(this.botPermissions(params.channel ?? ''), 'react') ?? noContent;
    });
    this.#route('DELETE', '/channels/:channel/messages/:message/reactions/:emoji/:user', () => noContent);
  }

  #tokenExpired(rec: InteractionRecord): boolean {
    return this.expiredTokens.has(rec.token) || Date.now() - rec.createdAt > this.#tokenLifetimeMs;
  }

  #newMessage(channelId: string, init: Partial<StoredMessage>): StoredMessage {
    const msg: StoredMessage = {
      id: snowflake(),
      channelId,
      content: '',
      components: [],
      attachments: [],
      flags: 0,
      type: 0,
      mentions: [],
      deleted: false,
      editCount: 0,
      ...init,
    };
    this.messages.set(msg.id, msg);
    return msg;
  }

  /** Applies content/components/attachments the way Discord does: `attachments` lists what stays. */
  #editMessage(id: string, body: Record<string, unknown>, files: UploadedFile[], countEdit = true): StoredMessage | undefined {
    const msg = this.messages.get(id);
    if (!msg || msg.deleted) return undefined;
    if (typeof body.content === 'string') msg.content = body.content;
    if (Array.isArray(body.components)) msg.components = body.components;
    if (Array.isArray(body.attachments) || files.length > 0) {
      const keep = Array.isArray(body.attachments) ? (body.attachments as { id: string | number }[]) : [];
      const kept = msg.attachments.filter((a) => keep.some((k) => String(k.id) === a.id));
      const added = files.map((f, i) => ({
        id: snowflake(),
        filename: f.filename || `file${i}`,
        contentType: f.contentType,
        data: f.data,
      }));
      msg.attachments = [...kept, ...added];
    }
    msg.flags &= ~128; // no longer "thinking…"
    if (countEdit) msg.editCount++;
    return msg;
  }
}

function mentionsIn(body: Record<string, unknown> | undefined): string[] {
  return [...String(body?.content ?? '').matchAll(/<@!?(\d+)>/g)].map((m) => m[1] ?? '');
}

/** DM channel ids the fake hands out: recognisable, so sends to them skip guild permissions. */
const DM_PREFIX = '9';
function dmChannelId(userId: string): string {
  return `${DM_PREFIX}${userId}`;
}
function dmRecipient(channelId: string): string | undefined {
  return channelId.startsWith(DM_PREFIX) && channelId.length > 18 ? channelId.slice(1) : undefined;
}

/** Discord's buckets follow the major parameter: one per channel, one per webhook. */
function bucketOf(pattern: string, params: Record<string, string>): string {
  if (params.channel) return `channel:${params.channel}:${pattern.includes('/messages/:message') ? 'message' : 'messages'}`;
  if (params.token) return `webhook:${params.token}`;
  if (params.id) return `interaction:${params.id}`;
  return pattern;
}

function optionType(value: string | number | boolean): number {
  if (typeof value === 'boolean') return 5;
  if (typeof value === 'number') return Number.isInteger(value) ? 4 : 10;
  return 3;
}

export async function startFakeDiscord(opts: FakeDiscordOptions = {}): Promise<FakeDiscord> {
  return new FakeDiscord(opts).listen();
}
