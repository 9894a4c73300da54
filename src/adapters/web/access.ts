// Who is who in the studio. On a loopback address with no access configured, whoever can open
// the page is on the bot's own machine: one local member with admin rights, no sign-in. With a
// shared password (WEB_PASSWORD) and/or personal links (/web, signed with WEB_SECRET), every
// browser signs in first, even on loopback (a reverse proxy makes everyone "local").
// Sessions are sealed cookies (nothing to store); every state-changing request carries a CSRF
// token derived from the session.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { MIN_SECRET_LENGTH, memberData, memberOf, seal, unseal, type SealedMember } from '../../../commands/web.js';
import type { Config } from '../../config/schema.js';
import { newJobId } from '../../jobs/ids.js';
import { cookiesOf, HttpError } from './http.js';

export const SESSION_COOKIE = 'studio_session';
/** The local member's id; config gets it as an admin in local mode only (see localAdminConfig). */
export const LOCAL_ADMIN_ID = 'web-local-admin';
const LOCAL_SESSION_MS = 30 * 86_400_000;
/** Wrong passwords one address may try per window before it has to wait (guessing the club password). */
const PASSWORD_TRIES = 5;
const PASSWORD_WINDOW_MS = 10 * 60_000;
const MAX_NAME = 40;

export type AccessMode = 'local' | 'members';

export interface Session {
  member: SealedMember;
  sid: string;
  csrf: string;
  expiresAt: number;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

/** Refuses to run an open studio where other machines can reach it. */
export function accessMode(config: Config): AccessMode {
  const { webPassword, webSecret } = config.secrets;
  if (webSecret !== undefined && webSecret.length < MIN_SECRET_LENGTH) {
    throw new Error(`web: WEB_SECRET must be at least ${MIN_SECRET_LENGTH} characters (it signs sign-in links).`);
  }
  if (webPassword || webSecret) return 'members';
  if (isLoopback(config.web.host)) return 'local';
  throw new Error(
    `web: refusing to listen on ${config.web.host} with no access control: anyone who can reach it would be admin. ` +
      'Set WEB_PASSWORD (a shared password) and/or WEB_SECRET (32+ characters, for /web sign-in links), or use web.host 127.0.0.1.',
  );
}

/** The config the studio's commands see in local mode: the one local member is an admin. */
export function localAdminConfig(config: Config): Config {
  const admins = config.permissions.admins;
  return { ...config, permissions: { ...config.permissions, admins: { ...admins, users: [...admins.users, LOCAL_ADMIN_ID] } } };
}

function digest(key: string, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

export class Access {
  readonly mode: AccessMode;
  /** Seals session cookies: WEB_SECRET when set (sessions survive a restart), else random per process. */
  private readonly key: string;
  private readonly secure: boolean;
  /** Wrong password attempts by client address: count and when the window started. */
  private readonly misses = new Map<string, { count: number; since: number }>();

  constructor(
    private readonly config: Config,
    private readonly now: () => number = Date.now,
  ) {
    this.mode = accessMode(config);
    this.key = config.secrets.webSecret ?? randomBytes(32).toString('base64url');
    this.secure = config.web.publicUrl.startsWith('https:');
  }

  /** How a browser without a session signs in. */
  signInMethods(): { password: boolean; link: boolean } {
    return { password: Boolean(this.config.secrets.webPassword), link: Boolean(this.config.secrets.webSecret) };
  }

  session(req: IncomingMessage): Session | undefined {
    const opened = unseal(this.key, 'session', cookiesOf(req).get(SESSION_COOKIE), this.now());
    if (!opened.ok) return undefined;
    const member = memberOf(opened.data);
    const { sid, exp } = opened.data;
    if (!member || typeof sid !== 'string' || typeof exp !== 'number') return undefined;
    // A local-mode cookie must not outlive a switch to members mode, nor the other way round.
    if ((member.userId === LOCAL_ADMIN_ID) !== (this.mode === 'local')) return undefined;
    return { member, sid, csrf: this.csrfFor(sid), expiresAt: exp };
  }

  /** A new session for `member`: the session and its Set-Cookie header. */
  open(member: SealedMember, lifetimeMs: number): { session: Session; cookie: string } {
    const sid = randomBytes(12).toString('base64url');
    const expiresAt = this.now() + lifetimeMs;
    const token = seal(this.key, 'session', { ...memberData(member), sid }, expiresAt);
    const attrs = ['Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${Math.floor(lifetimeMs / 1000)}`, ...(this.secure ? ['Secure'] : [])];
    return { session: { member, sid, csrf: this.csrfFor(sid), expiresAt }, cookie: `${SESSION_COOKIE}=${token}; ${attrs.join('; ')}` };
  }

  openLocal(): { session: Session; cookie: string } {
    return this.open({ platform: 'web', userId: LOCAL_ADMIN_ID, name: 'local admin', roles: [] }, LOCAL_SESSION_MS);
  }

  clearCookie(): string {
    return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`;
  }

  /** A shared-password sign-in: each browser becomes its own member under the name it gives. */
  passwordSignIn(password: unknown, name: unknown, client = ''): { session: Session; cookie: string } {
    const expected = this.config.secrets.webPassword;
    if (!expected) throw new HttpError(403, 'This studio has no shared password; open the link the bot sends you with /web.');
    const now = this.now();
    const missed = this.misses.get(client);
    if (missed && now - missed.since > PASSWORD_WINDOW_MS) this.misses.delete(client);
    const tries = this.misses.get(client);
    if (tries && tries.count >= PASSWORD_TRIES) {
      const minutes = Math.ceil((tries.since + PASSWORD_WINDOW_MS - now) / 60_000);
      throw new HttpError(429, `Too many wrong passwords from here; try again in ${minutes} minute${minutes === 1 ? '' : 's'}.`);
    }
    const given = typeof password === 'string' ? password : '';
    if (!timingSafeEqual(digest(this.key, given), digest(this.key, expected))) {
      // Bounded: a flood of addresses must not grow the map without end.
      if (this.misses.size > 10_000) this.misses.clear();
      this.misses.set(client, { count: (tries?.count ?? 0) + 1, since: tries?.since ?? now });
      throw new HttpError(403, 'Wrong password.');
    }
    const shown = typeof name === 'string' ? name.replace(/[\p{C}]/gu, '').trim().slice(0, MAX_NAME) : '';
    if (!shown) throw new HttpError(400, 'Tell us your name, so the club knows whose pictures these are.');
    return this.open({ platform: 'web', userId: `pw-${newJobId(12)}`, name: shown, roles: [] }, this.config.web.linkMinutes * 60_000);
  }

  /** A /web link: refused when tampered with or expired, with a reason the member can act on. */
  linkSignIn(token: unknown): { session: Session; cookie: string } {
    const secret = this.config.secrets.webSecret;
    if (!secret) throw new HttpError(403, 'This studio does not take sign-in links.');
    const opened = unseal(secret, 'signin', token, this.now());
    if (!opened.ok) {
      throw new HttpError(
        403,
        opened.why === 'expired'
          ? 'That sign-in link has expired. Ask the bot for a new one with /web.'
          : 'That sign-in link is not valid. Ask the bot for a new one with /web.',
      );
    }
    const member = memberOf(opened.data);
    if (!member) throw new HttpError(403, 'That sign-in link is not valid. Ask the bot for a new one with /web.');
    return this.open(member, this.config.web.linkMinutes * 60_000);
  }

  /** Cross-site requests cannot read this token, so they cannot send it back. */
  checkCsrf(req: IncomingMessage, session: Session): void {
    const given = req.headers['x-csrf-token'];
    const a = Buffer.from(typeof given === 'string' ? given : '');
    const b = Buffer.from(session.csrf);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new HttpError(403, 'This page is out of date (missing or wrong security token); reload it and try again.');
    }
  }

  /**
   * A browser's Origin, when it sends one, must be this studio; on loopback the Host must be a
   * loopback name too (a DNS-rebinding page would present its own host name).
   */
  checkOrigin(req: IncomingMessage): void {
    const host = req.headers.host ?? '';
    if (this.mode === 'local') {
      const name = host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
      if (!isLoopback(name)) throw new HttpError(403, 'This studio only answers on its loopback address.');
    }
    const origin = req.headers.origin;
    if (origin === undefined) return;
    const allowed = new Set([`http://${host}`, `https://${host}`]);
    if (this.config.web.publicUrl) allowed.add(new URL(this.config.web.publicUrl).origin);
    if (!allowed.has(origin)) throw new HttpError(403, 'Requests from other sites are refused.');
  }

  private csrfFor(sid: string): string {
    return digest(this.key, `csrf\n${sid}`).toString('base64url');
  }
}
