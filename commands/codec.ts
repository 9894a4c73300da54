// Button payloads for both platforms: `v1:<code>:<jobId>[:<index>]`, ASCII only and at most
// 64 bytes (Telegram's callback_data limit; Discord allows 100 characters). Everything else a
// button needs is loaded from the store by job id, so buttons keep working after a restart.
// Payloads come back from the chat platform and are untrusted: decoding accepts only exactly
// what encoding produces.
import type { Action, ActionName } from './types.js';

const VERSION = 'v1';
const MAX_BYTES = 64;
/** Matches the store's job ids ([0-9a-z], 8 chars today); a little slack for the future. */
const JOB_ID = /^[0-9a-z]{1,16}$/;
/** Pictures per job are at most 9, so indexes run 0..8. */
const MAX_INDEX = 8;

const CODES: Record<ActionName, string> = {
  reroll: 'rr',
  vary: 'va',
  'vary-strong': 'vs',
  upscale: 'up',
  info: 'in',
  cancel: 'cx',
  delete: 'dl',
};

const ACTIONS = new Map<string, ActionName>(Object.entries(CODES).map(([action, code]) => [code, action as ActionName]));

export function encodeAction(a: Action): string {
  const code = CODES[a.action];
  if (!code) throw new Error(`encodeAction: unknown action ${String(a.action)}`);
  if (!JOB_ID.test(a.jobId)) throw new Error(`encodeAction: job id must match ${JOB_ID}, got ${JSON.stringify(a.jobId)}`);
  const parts = [VERSION, code, a.jobId];
  if (a.index !== undefined) {
    if (!Number.isInteger(a.index) || a.index < 0 || a.index > MAX_INDEX) {
      throw new Error(`encodeAction: index must be an integer 0..${MAX_INDEX}, got ${String(a.index)}`);
    }
    parts.push(String(a.index));
  }
  return parts.join(':');
}

export function decodeAction(s: unknown): Action | undefined {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_BYTES) return undefined;
  // ASCII printable only; this also makes length in characters equal length in bytes.
  if (!/^[\x21-\x7e]+$/.test(s)) return undefined;
  const parts = s.split(':');
  if (parts.length < 3 || parts.length > 4) return undefined;
  const [version, code, jobId, index] = parts;
  if (version !== VERSION || code === undefined || jobId === undefined) return undefined;
  const action = ACTIONS.get(code);
  if (!action || !JOB_ID.test(jobId)) return undefined;
  if (index === undefined) return { action, jobId };
  // One digit, no sign, no leading zeros or spaces: the canonical form encodeAction writes.
  if (!/^[0-8]$/.test(index)) return undefined;
  return { action, jobId, index: Number(index) };
}
