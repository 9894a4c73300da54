// /web: a private, signed, expiring link that signs this member in to the web studio, so the
// browser acts as them (same settings, caps and permissions). The seal helpers below are the
// one HMAC format the studio also uses for its session cookies.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Config } from '../src/config/schema.js';
import type { Platform, Requester } from '../src/jobs/types.js';
import { refuse } from './format.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

/** WEB_SECRET must be long enough that nobody can guess it from signed links. */
export const MIN_SECRET_LENGTH = 32;

const PLATFORMS: ReadonlySet<string> = new Set<Platform>(['discord', 'telegram', 'web']);

/** Who a link or session stands for. */
export interface SealedMember {
  platform: Platform;
  userId: string;
  name: string;
  roles: string[];
}

function mac(key: string, purpose: string, body: string): Buffer {
  return createHmac('sha256', key).update(`${purpose}\n${body}`).digest();
}

/**
 * `<body>.<mac>`, both base64url: the body is JSON with an expiry; `purpose` keeps a session
 * cookie from being accepted as a sign-in link and the other way round.
 */
export function seal(key: string, purpose: string, data: Record<string, unknown>, expiresAt: number): string {
  const body = Buffer.from(JSON.stringify({ ...data, exp: expiresAt }), 'utf8').toString('base64url');
  return `${body}.${mac(key, purpose, body).toString('base64url')}`;
}

export type Unsealed = { ok: true; data: Record<string, unknown> } | { ok: false; why: 'invalid' | 'expired' };

export function unseal(key: string, purpose: string, token: unknown, now: number): Unsealed {
  if (typeof token !== 'string' || token.length > 4096) return { ok: false, why: 'invalid' };
  const [body, sig, extra] = token.split('.');
  if (!body || !sig || extra !== undefined) return { ok: false, why: 'invalid' };
  const expected = mac(key, purpose, body);
  const given = Buffer.from(sig, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, why: 'invalid' };
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, why: 'invalid' };
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return { ok: false, why: 'invalid' };
  const fields = data as Record<string, unknown>;
  if (typeof fields.exp !== 'number' || fields.exp <= now) return { ok: false, why: 'expired' };
  return { ok: true, data: fields };
}

/** The member a sealed body names, or undefined when a field is missing or malformed. */
export function memberOf(data: Record<string, unknown>): SealedMember | undefined {
  const { p, u, n, r } = data;
  if (typeof p !== 'string' || !PLATFORMS.has(p)) return undefined;
  if (typeof u !== 'string' || !/^[0-9A-Za-z_-]{1,64}$/.test(u)) return undefined;
  if (typeof n !== 'string' || n.length > 100) return undefined;
  if (!Array.isArray(r) || r.length > 100 || !r.every((x) => typeof x === 'string' && x.length <= 64)) return undefined;
  return { platform: p as Platform, userId: u, name: n, roles: r as string[] };
}

export function memberData(m: SealedMember): Record<string, unknown> {
  return { p: m.platform, u: m.userId, n: m.name, r: m.roles };
}

/** Where members' browsers reach the studio. */
export function studioUrl(config: Config): string {
  if (config.web.publicUrl) return config.web.publicUrl;
  const host = config.web.host.includes(':') ? `[${config.web.host}]` : config.web.host;
  return `http://${host}:${config.web.port}`;
}

export function signInLink(config: Config, secret: string, requester: Requester, now: number): string {
  const { platform, userId, name, roles } = requester;
  const token = seal(secret, 'signin', memberData({ platform, userId, name, roles }), now + config.web.linkMinutes * 60_000);
  return `${studioUrl(config)}/signin?t=${token}`;
}

function validity(minutes: number): string {
  if (minutes % 1440 === 0) return `${minutes / 1440} day${minutes === 1440 ? '' : 's'}`;
  if (minutes % 60 === 0) return `${minutes / 60} hour${minutes === 60 ? '' : 's'}`;
  return `${minutes} minutes`;
}

export async function web(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { config } = ctx;
  if (req.requester.platform === 'web') return refuse('You are in the web studio already.');
  const secret = config.secrets.webSecret;
  if (!config.web.enabled || !secret) {
    return refuse('This bot has no web studio sign-in links (an admin can turn them on with web.enabled and WEB_SECRET).');
  }
  // Telegram has no private answers in a group: the link would sign anyone in as this member.
  // (A Telegram private chat's id is the member's user id.)
  if (req.requester.platform === 'telegram' && req.target.chatId !== req.requester.userId) {
    return refuse('Ask me for /web in a private chat with the bot, so that your sign-in link stays yours.');
  }
  const link = signInLink(config, secret, req.requester, Date.now());
  const lead = `Your personal link to the web studio. It signs in as you for ${validity(config.web.linkMinutes)}; do not share it.`;
  // Plain text, not a code part: chat apps make a bare link clickable, a code block they do not.
  return { ok: true, visibility: 'private', text: `${lead}\n${link}` };
}
