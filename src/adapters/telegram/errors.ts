// How a failed Bot API call should be treated. grammY throws GrammyError for answers with
// ok:false and HttpError when the request itself failed; auto-retry has already waited out
// 429s and 5xx by the time an error reaches us.
import { GrammyError, HttpError } from 'grammy';

export type FailureKind =
  /** "message is not modified": the edit we wanted is already there. */
  | 'not-modified'
  /** The member blocked the bot, or the bot lost the chat: never retry. */
  | 'unreachable'
  /** The message to edit or delete is gone (deleted by someone, older than 48 h). */
  | 'message-gone'
  /** The token is wrong (401). A 409 is not: another poller or a Telegram hiccup passes (see polling.ts). */
  | 'fatal'
  /** Anything else: worth trying again later. */
  | 'transient';

const TOKEN_IN_TEXT = /bot\d+:[A-Za-z0-9_-]+/g;

export function classifyFailure(err: unknown): FailureKind {
  if (err instanceof GrammyError) {
    const text = err.description.toLowerCase();
    if (err.error_code === 400 && text.includes('message is not modified')) return 'not-modified';
    if (err.error_code === 401) return 'fatal';
    if (err.error_code === 403) return 'unreachable';
    if (err.error_code === 400 && (text.includes('chat not found') || text.includes('user is deactivated') || text.includes('have no rights'))) {
      return 'unreachable';
    }
    if (err.error_code === 400 && /message (to (edit|delete) )?not found|message can't be (edited|deleted)/.test(text)) return 'message-gone';
    if (err.error_code === 400) return 'transient';
  }
  return 'transient';
}

/**
 * A log-safe summary of an API failure. GrammyError carries the request payload (file
 * buffers) and HttpError wraps the fetch error; neither goes into the log whole, and any
 * token-shaped text is masked in case a URL slipped into a message.
 */
export function describeFailure(err: unknown): Record<string, string | number> {
  if (err instanceof GrammyError) {
    return { method: err.method, code: err.error_code, description: scrub(err.description) };
  }
  if (err instanceof HttpError) return { network: scrub(err.message) };
  if (err instanceof Error) return { error: scrub(err.message) };
  return { error: scrub(String(err)) };
}

function scrub(text: string): string {
  return text.replace(TOKEN_IN_TEXT, 'bot<redacted>');
}

/** The user-facing reason stored on an undeliverable job. */
export function unreachableReason(err: unknown): string {
  if (err instanceof GrammyError) return `telegram: ${err.description}`;
  return 'telegram: chat unreachable';
}
