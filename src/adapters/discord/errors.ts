// What a failed Discord call means for delivery, and how to log it without leaking tokens.
// DiscordAPIError.url, RateLimitError.url and HTTPError.url carry interaction tokens in their
// paths, and requestBody carries the uploaded pictures: logs get only the fields below.
import { DiscordAPIError, HTTPError, RateLimitError } from 'discord.js';

export interface DiscordFailure {
  kind: 'api' | 'http' | 'rate-limit' | 'network' | 'other';
  status?: number;
  /** Discord's JSON error code (50027, 10062…) where it sent one. */
  code?: number | string;
  method?: string;
  /** Safe to log: tokens scrubbed. */
  message: string;
  retryAfterMs?: number;
}

/** Webhook and interaction paths embed a token; bot tokens look like three base64 parts. */
export function scrubTokens(text: string): string {
  return text
    .replace(/(webhooks\/\d+\/)[^/\s?]+/g, '$1[token]')
    .replace(/(interactions\/\d+\/)[^/\s?]+/g, '$1[token]')
    .replace(/[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{20,}/g, '[token]');
}

export function describeFailure(err: unknown): DiscordFailure {
  if (err instanceof DiscordAPIError) {
    return { kind: 'api', status: err.status, code: err.code, method: err.method, message: scrubTokens(err.message) };
  }
  if (err instanceof RateLimitError) {
    return { kind: 'rate-limit', status: 429, method: err.method, message: 'rate limited', retryAfterMs: err.retryAfter };
  }
  if (err instanceof HTTPError) {
    return { kind: 'http', status: err.status, method: err.method, message: scrubTokens(err.message) };
  }
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const network = typeof code === 'string' || err.name === 'AbortError' || /fetch failed|socket|ECONN|timed? ?out/i.test(err.message);
    return {
      kind: network ? 'network' : 'other',
      ...(typeof code === 'string' ? { code } : {}),
      message: scrubTokens(err.message),
    };
  }
  return { kind: 'other', message: scrubTokens(String(err)) };
}

/** The interaction token can no longer be used: deliver through the channel instead. */
export function tokenIsDead(f: DiscordFailure): boolean {
  // 50027 Invalid Webhook Token (after 15 minutes), 10015 Unknown Webhook, 10062 Unknown
  // interaction; some expiries surface as a bare 401 or a 404 on the webhook route.
  return f.code === 50027 || f.code === 10015 || f.code === 10062 || (f.kind === 'api' && f.status === 401);
}

/** The message we meant to edit is gone (deleted by a moderator): post a new one. */
export function messageIsGone(f: DiscordFailure): boolean {
  return f.code === 10008;
}

/** Retrying will not help: the bot may not post here at all. */
export function deliveryIsImpossible(f: DiscordFailure): boolean {
  // 50013 Missing Permissions, 50001 Missing Access, 10003 Unknown Channel, 50007 Cannot send
  // messages to this user, 10004 Unknown Guild.
  return f.code === 50013 || f.code === 50001 || f.code === 10003 || f.code === 50007 || f.code === 10004;
}

/** Worth another try later: Discord or the network hiccupped. */
export function isTransient(f: DiscordFailure): boolean {
  return f.kind === 'network' || f.kind === 'rate-limit' || f.kind === 'http' || (f.status !== undefined && f.status >= 500);
}

/** 40005 Request entity too large: the picture must shrink. */
export function isTooLarge(f: DiscordFailure): boolean {
  return f.code === 40005 || f.status === 413;
}
