// Structured logs (pino NDJSON) that never carry a token. pino's `redact` only removes values at
// known paths; tokens also hide inside strings — Telegram puts the bot token in every URL,
// Discord puts interaction and webhook tokens in URLs and error messages. So every string is
// scrubbed as well: the message, the logged object (errors included), and finally each written
// line. The line scrub is not only a safety net: pino passes a child's bindings through no
// formatter (only the root's), so `log.child({ url })` is caught there alone.
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Config } from './config/schema.js';

export type { Logger } from 'pino';

const CENSOR = '[redacted]';

// Each pattern may only start where a token can start (the lookbehinds): without that, a long
// run of letters or digits (base64 data, a big number) costs quadratic time per log line.
const TOKEN_PATTERNS: readonly [RegExp, string][] = [
  // Telegram bot token "123456789:AA…" (also inside /bot<token>/ and /file/bot<token>/ URLs).
  [/(?<!\d)\d{5,}:[A-Za-z0-9_-]{30,}/g, CENSOR],
  // …URL-encoded, as it appears in a query string or an encoded URL inside an error message.
  [/(?<!\d)\d{5,}%3[Aa][A-Za-z0-9_-]{30,}/g, CENSOR],
  // The secret half of a Telegram token on its own (it starts with "AA" and is 35 characters).
  [/(?<![A-Za-z0-9_-])AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])/g, CENSOR],
  // Discord bot token: three base64url parts separated by dots (id . timestamp . hmac).
  [/(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{20,}/g, CENSOR],
  // Interaction and webhook tokens are the path segment after the id.
  [/((?:webhooks|interactions)\/\d+\/)[^/?#\s"'\\]+/g, `$1${CENSOR}`],
  // An Authorization header that was turned into text.
  [/((?:Bot|Bearer)\s+)[A-Za-z0-9._~+/-]{20,}=*/g, `$1${CENSOR}`],
];

/** Exact secret values known to this process (the configured tokens) and their encodings. */
const knownSecrets = new Set<string>();
/** The same, longest first (a shorter form is often part of a longer one). */
let secretsByLength: string[] = [];

/** Derived forms shorter than this are not scrubbed on their own: they would hit ordinary text. */
const MIN_DERIVED_LENGTH = 16;

/**
 * Also scrub this value from all later logs and redactSecrets() calls (≥ 6 characters), in every
 * form a token travels in: raw, URL-encoded (`%3A` in a Telegram token), the secret half after
 * the `:` on its own (Telegram's id half is public, the rest is the key), and base64/base64url
 * at any of the three byte alignments (a Basic auth header, a dumped request body).
 */
export function registerSecret(value: string | undefined): void {
  if (!value || value.length < 6) return;
  knownSecrets.add(value);
  for (const form of derivedForms(value)) if (form.length >= MIN_DERIVED_LENGTH) knownSecrets.add(form);
  secretsByLength = [...knownSecrets].sort((a, b) => b.length - a.length);
}

function derivedForms(secret: string): string[] {
  const forms = new Set<string>();
  const encoded = encodeURIComponent(secret);
  forms.add(encoded);
  forms.add(encoded.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()));
  const colon = secret.indexOf(':');
  if (colon >= 0) forms.add(secret.slice(colon + 1));
  for (const text of [secret, `bot${secret}`]) {
    for (const form of base64Forms(Buffer.from(text, 'utf8'))) forms.add(form);
  }
  return [...forms];
}

/**
 * The part of base64(…secret…) that depends on the secret's bytes alone, for each alignment the
 * secret can start at inside a longer encoded buffer: characters that mix in a neighbouring
 * byte are cut off at both ends.
 */
function base64Forms(bytes: Buffer): string[] {
  const out: string[] = [];
  for (const lead of [0, 1, 2]) {
    const padded = Buffer.concat([Buffer.alloc(lead), bytes]);
    const full = padded.toString('base64').replace(/=+$/, '');
    const skip = lead === 0 ? 0 : lead + 1;
    const total = lead + bytes.length;
    // A partial final group's last characters depend on whatever bytes follow the secret.
    const keep = total % 3 === 0 ? full.length : Math.floor(total / 3) * 4;
    const stable = full.slice(skip, keep);
    out.push(stable, stable.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return out;
}

/** Replace every token-looking substring and every registered secret with "[redacted]". */
export function redactSecrets(text: string): string {
  let out = text;
  for (const secret of secretsByLength) {
    if (out.includes(secret)) out = out.split(secret).join(CENSOR);
  }
  for (const [pattern, replacement] of TOKEN_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

const REDACT_PATHS = [
  'token',
  '*.token',
  'secrets',
  '*.secrets',
  'config.secrets',
  'headers.authorization',
  '*.headers.authorization',
  'headers.Authorization',
  '*.headers.Authorization',
  'err.requestBody',
  '*.requestBody',
  // Discord interaction tokens live in a stored job's reply handle (job.target.handle.token).
  'target.handle.token',
  '*.target.handle.token',
  'handle.token',
  '*.handle.token',
];

export function createLogger(config: Config, destination?: DestinationStream): Logger {
  registerSecret(config.secrets.discordToken);
  registerSecret(config.secrets.telegramToken);

  const sink = destination ?? pino.destination({ dest: 1, sync: true });
  return pino(
    {
      level: config.logLevel,
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      serializers: {
        // Errors were already turned into scrubbed plain objects by formatters.log; anything
        // else under `err` (a string, a plain object) is scrubbed here.
        err: (value: unknown) => scrub(value),
        msg: (value: unknown) => (typeof value === 'string' ? redactSecrets(value) : value),
      },
      formatters: {
        log: (object) => scrub(object) as Record<string, unknown>,
        bindings: (bindings) => scrub(bindings) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          const clean = args.map((a: unknown) => (typeof a === 'string' ? redactSecrets(a) : a));
          return method.apply(this, clean as Parameters<typeof method>);
        },
      },
    },
    scrubbingStream(sink),
  );
}

/** The last line of defence: scrub each serialized line before it is written. */
function scrubbingStream(inner: DestinationStream): DestinationStream {
  const flushable = inner as DestinationStream & { flush?: (cb?: (err?: Error) => void) => void; flushSync?: () => void };
  const outer: DestinationStream & { flush?: (cb?: (err?: Error) => void) => void; flushSync?: () => void } = {
    write: (line: string) => inner.write(redactSecrets(line)),
  };
  if (typeof flushable.flush === 'function') outer.flush = (cb) => flushable.flush?.(cb);
  if (typeof flushable.flushSync === 'function') outer.flushSync = () => flushable.flushSync?.();
  return outer;
}

const MAX_DEPTH = 8;

/**
 * A copy of `value` with every string scrubbed, errors turned into plain objects (message, stack,
 * code, url … and cause), binary data summarized instead of dumped, and cycles cut.
 */
export function scrub(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' ? `[function ${value.name || 'anonymous'}]` : value;
  }
  if (seen.has(value)) return '[circular]';
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) return `[${value.byteLength} bytes]`;
  seen.add(value);
  try {
    if (value instanceof Error) return serializeError(value, depth, seen);
    if (value instanceof Date) return value.toISOString();
    if (value instanceof Map) return scrub(Object.fromEntries(value), depth + 1, seen);
    if (value instanceof Set) return scrub([...value], depth + 1, seen);
    if (Array.isArray(value)) return value.slice(0, 100).map((v) => scrub(v, depth + 1, seen));
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value)) out[key] = scrub(child, depth + 1, seen);
    return out;
  } finally {
    seen.delete(value);
  }
}

function serializeError(err: Error, depth: number, seen: WeakSet<object>): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: err.constructor?.name || err.name,
    message: redactSecrets(err.message),
    stack: redactSecrets(err.stack ?? ''),
  };
  for (const [key, child] of Object.entries(err)) {
    // Discord's DiscordAPIError carries the whole request body, uploaded images included.
    if (key === 'requestBody') out[key] = CENSOR;
    else if (!(key in out)) out[key] = scrub(child, depth + 1, seen);
  }
  if (err.cause !== undefined) out.cause = scrub(err.cause, depth + 1, seen);
  if (err instanceof AggregateError) out.errors = scrub(err.errors, depth + 1, seen);
  return out;
}
