// What real Discord refuses, for the fake: message limits (50035), upload size (413 / 40005),
// channel permissions (50001 / 50013) and rate limits (429 with Discord's headers). Sources:
// developers/resources/message.mdx, developers/components/reference.mdx,
// developers/topics/permissions.mdx, developers/topics/rate-limits.mdx (see shared notes).

export interface Refusal {
  status: number;
  json: unknown;
  headers?: Record<string, string>;
}

export const MAX_CONTENT = 2000;
export const MAX_ROWS = 5;
export const MAX_BUTTONS_PER_ROW = 5;
export const MAX_LABEL = 80;
export const MAX_CUSTOM_ID = 100;

/** Permission bits the fake checks (developers/topics/permissions.mdx). */
export const PERM = {
  ADMINISTRATOR: 1n << 3n,
  ADD_REACTIONS: 1n << 6n,
  VIEW_CHANNEL: 1n << 10n,
  SEND_MESSAGES: 1n << 11n,
  MANAGE_MESSAGES: 1n << 13n,
  EMBED_LINKS: 1n << 14n,
  ATTACH_FILES: 1n << 15n,
  READ_MESSAGE_HISTORY: 1n << 16n,
  SEND_MESSAGES_IN_THREADS: 1n << 38n,
} as const;

/** Upload limit per file by the guild's premium tier (boosts): 10, 10, 50 and 100 MiB. */
export function guildUploadLimit(premiumTier: number): number {
  const mib = [10, 10, 50, 100][Math.max(0, Math.min(3, premiumTier))] ?? 10;
  return mib * 1024 * 1024;
}

function invalidForm(errors: Record<string, unknown>): Refusal {
  return { status: 400, json: { message: 'Invalid Form Body', code: 50035, errors } };
}

const lengthError = (max: number) => ({ _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: `Must be ${max} or fewer in length.` }] });

/** Autocomplete answers: at most 25 choices, each name 1–100 characters (interactions/receiving-and-responding.mdx). */
export const MAX_CHOICES = 25;
export const MAX_CHOICE_NAME = 100;

/** 50035 for an autocomplete result (callback type 8) beyond Discord's limits. */
export function checkChoices(body: Record<string, unknown>): Refusal | undefined {
  const choices = body.choices;
  if (!Array.isArray(choices)) return invalidForm({ choices: { _errors: [{ code: 'BASE_TYPE_REQUIRED', message: 'This field is required' }] } });
  if (choices.length > MAX_CHOICES) return invalidForm({ choices: lengthError(MAX_CHOICES) });
  for (const [i, c] of choices.entries()) {
    const name = (c as { name?: unknown }).name;
    if (typeof name !== 'string' || name.length < 1 || [...name].length > MAX_CHOICE_NAME) return invalidForm({ choices: { [i]: { name: lengthError(MAX_CHOICE_NAME) } } });
  }
  return undefined;
}

/** 50035 for content and component limits, as Discord answers a create or an edit. */
export function checkMessageBody(body: Record<string, unknown> | undefined): Refusal | undefined {
  if (!body) return undefined;
  if (typeof body.content === 'string' && [...body.content].length > MAX_CONTENT) {
    return invalidForm({ content: lengthError(MAX_CONTENT) });
  }
  const rows = body.components;
  if (!Array.isArray(rows)) return undefined;
  if (rows.length > MAX_ROWS) return invalidForm({ components: lengthError(MAX_ROWS) });
  const ids = new Set<string>();
  for (const [r, row] of rows.entries()) {
    const buttons = (row as { components?: unknown }).components;
    if (!Array.isArray(buttons) || buttons.length === 0 || buttons.length > MAX_BUTTONS_PER_ROW) {
      return invalidForm({ components: { [r]: { components: lengthError(MAX_BUTTONS_PER_ROW) } } });
    }
    for (const [b, button] of buttons.entries()) {
      const { label, custom_id: customId } = button as { label?: unknown; custom_id?: unknown };
      if (typeof label === 'string' && [...label].length > MAX_LABEL) {
        return invalidForm({ components: { [r]: { components: { [b]: { label: lengthError(MAX_LABEL) } } } } });
      }
      if (typeof customId === 'string') {
        if (customId.length < 1 || customId.length > MAX_CUSTOM_ID) {
          return invalidForm({ components: { [r]: { components: { [b]: { custom_id: lengthError(MAX_CUSTOM_ID) } } } } });
        }
        if (ids.has(customId)) {
          return invalidForm({ components: { _errors: [{ code: 'COMPONENT_CUSTOM_ID_DUPLICATED', message: 'Component custom id cannot be duplicated' }] } });
        }
        ids.add(customId);
      }
    }
  }
  return undefined;
}

/** 413 with code 40005 when any file is over the per-file limit. */
export function checkUploadSize(files: { data: Buffer }[], limit: number): Refusal | undefined {
  if (files.some((f) => f.data.length > limit)) {
    return { status: 413, json: { message: 'Request entity too large', code: 40005 } };
  }
  return undefined;
}

export type ChannelAction = 'read' | 'send' | 'edit' | 'delete' | 'react';

/**
 * What the bot may do in a channel, given its permission bits there. Sending needs View
 * Channel (else 50001 Missing Access) and Send Messages (Send Messages in Threads in a
 * thread), files need Attach Files, a reply needs Read Message History (else 50013).
 */
export function checkChannelPermission(
  perms: bigint,
  action: ChannelAction,
  opts: { thread?: boolean; files?: boolean; reply?: boolean } = {},
): Refusal | undefined {
  const has = (bit: bigint) => (perms & PERM.ADMINISTRATOR) !== 0n || (perms & bit) === bit;
  const missingAccess: Refusal = { status: 403, json: { message: 'Missing Access', code: 50001 } };
  const missingPermissions: Refusal = { status: 403, json: { message: 'Missing Permissions', code: 50013 } };
  if (!has(PERM.VIEW_CHANNEL)) return missingAccess;
  switch (action) {
    case 'read':
      return has(PERM.READ_MESSAGE_HISTORY) ? undefined : missingAccess;
    case 'send':
      if (!has(opts.thread ? PERM.SEND_MESSAGES_IN_THREADS : PERM.SEND_MESSAGES)) return missingPermissions;
      if (opts.files && !has(PERM.ATTACH_FILES)) return missingPermissions;
      if (opts.reply && !has(PERM.READ_MESSAGE_HISTORY)) return missingPermissions;
      return undefined;
    case 'edit':
      if (opts.files && !has(PERM.ATTACH_FILES)) return missingPermissions;
      return undefined;
    case 'delete':
      return undefined;
    case 'react':
      return has(PERM.READ_MESSAGE_HISTORY) && has(PERM.ADD_REACTIONS) ? undefined : missingPermissions;
  }
}

/**
 * Per-bucket request windows with Discord's response headers, plus the global limit. Buckets
 * follow Discord's major parameters: a channel, or a webhook (interaction token).
 */
export class RateLimiter {
  readonly #perWindow: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { start: number; used: number }>();
  #globalUntil = 0;

  constructor(opts: { perWindow: number; windowMs: number; now: () => number }) {
    this.#perWindow = opts.perWindow;
    this.#windowMs = opts.windowMs;
    this.#now = opts.now;
  }

  /** Every request for `seconds` answers a global 429, as when the bot exceeds 50 requests a second. */
  blockGlobally(seconds: number): void {
    this.#globalUntil = this.#now() + seconds * 1000;
  }

  /** Counts one request; a 429 when the bucket (or the whole bot) is over its limit, else the headers to send. */
  take(bucket: string, interactionRoute: boolean): { refusal?: Refusal; headers: Record<string, string> } {
    const now = this.#now();
    // Interaction endpoints are not bound to the global rate limit (rate-limits.mdx).
    if (!interactionRoute && now < this.#globalUntil) {
      const retryAfter = (this.#globalUntil - now) / 1000;
      return {
        headers: {},
        refusal: {
          status: 429,
          json: { message: 'You are being rate limited.', retry_after: retryAfter, global: true },
          headers: { 'retry-after': String(Math.ceil(retryAfter)), 'x-ratelimit-global': 'true', 'x-ratelimit-scope': 'global' },
        },
      };
    }
    let b = this.#buckets.get(bucket);
    if (!b || now - b.start >= this.#windowMs) {
      b = { start: now, used: 0 };
      this.#buckets.set(bucket, b);
    }
    const resetAfter = (b.start + this.#windowMs - now) / 1000;
    const hash = Buffer.from(bucket).toString('base64url').slice(0, 16);
    const headers = (remaining: number): Record<string, string> => ({
      'x-ratelimit-limit': String(this.#perWindow),
      'x-ratelimit-remaining': String(Math.max(0, remaining)),
      'x-ratelimit-reset': ((b.start + this.#windowMs) / 1000).toFixed(3),
      'x-ratelimit-reset-after': resetAfter.toFixed(3),
      'x-ratelimit-bucket': hash,
    });
    if (b.used >= this.#perWindow) {
      return {
        headers: {},
        refusal: {
          status: 429,
          json: { message: 'You are being rate limited.', retry_after: resetAfter, global: false },
          headers: { ...headers(0), 'retry-after': String(Math.ceil(resetAfter)), 'x-ratelimit-scope': 'user' },
        },
      };
    }
    b.used++;
    return { headers: headers(this.#perWindow - b.used) };
  }
}
