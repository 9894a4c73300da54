import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';
// 252 is the largest multiple of 36 below 256: bytes at or above it are skipped so that every
// character is equally likely (a plain `% 36` would favour the first four).
const UNBIASED_LIMIT = 252;

/** A short job id: 8 characters of [0-9a-z] (about 41 bits), safe in button payloads and URLs. */
export function newJobId(length = 8): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte >= UNBIASED_LIMIT) continue;
      out += ALPHABET[byte % 36];
      if (out.length === length) break;
    }
  }
  return out;
}
