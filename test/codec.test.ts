import { describe, expect, it } from 'vitest';
import { decodeAction, encodeAction } from '../commands/codec.js';
import type { Action, ActionName } from '../commands/types.js';

const ACTIONS: ActionName[] = ['reroll', 'vary', 'vary-strong', 'upscale', 'info', 'cancel', 'delete'];

describe('button codec', () => {
  it('round-trips every action, with and without a picture index', () => {
    for (const action of ACTIONS) {
      for (const index of [undefined, 0, 3, 8]) {
        const a: Action = index === undefined ? { action, jobId: 'k3x9q2ab' } : { action, jobId: 'k3x9q2ab', index };
        const s = encodeAction(a);
        expect(decodeAction(s)).toEqual(a);
      }
    }
  });

  it('writes the documented format with short codes', () => {
    expect(encodeAction({ action: 'reroll', jobId: 'abc123' })).toBe('v1:rr:abc123');
    expect(encodeAction({ action: 'vary', jobId: 'abc123', index: 2 })).toBe('v1:va:abc123:2');
    expect(encodeAction({ action: 'vary-strong', jobId: 'abc123', index: 0 })).toBe('v1:vs:abc123:0');
    expect(encodeAction({ action: 'upscale', jobId: 'abc123', index: 1 })).toBe('v1:up:abc123:1');
    expect(encodeAction({ action: 'info', jobId: 'abc123', index: 3 })).toBe('v1:in:abc123:3');
    expect(encodeAction({ action: 'cancel', jobId: 'abc123' })).toBe('v1:cx:abc123');
    expect(encodeAction({ action: 'delete', jobId: 'abc123' })).toBe('v1:dl:abc123');
  });

  it('stays ASCII and within 64 bytes even at the longest id and index', () => {
    for (const action of ACTIONS) {
      const s = encodeAction({ action, jobId: 'z'.repeat(16), index: 8 });
      expect(Buffer.byteLength(s, 'utf8')).toBeLessThanOrEqual(64);
      expect(s).toMatch(/^[\x20-\x7e]+$/);
    }
  });

  it('refuses to encode what it could not decode', () => {
    expect(() => encodeAction({ action: 'reroll', jobId: 'ABC' })).toThrow();
    expect(() => encodeAction({ action: 'reroll', jobId: 'a'.repeat(17) })).toThrow();
    expect(() => encodeAction({ action: 'vary', jobId: 'abc', index: 9 })).toThrow();
    expect(() => encodeAction({ action: 'vary', jobId: 'abc', index: 1.5 })).toThrow();
    expect(() => encodeAction({ action: 'nope' as ActionName, jobId: 'abc' })).toThrow();
  });

  it('rejects malformed, foreign and hostile payloads', () => {
    const bad: unknown[] = [
      '',
      'v1',
      'v1:rr',
      'v1:rr:',
      'v1:rr::1',
      'v1:rr:abc:',
      'v2:rr:abc',
      'V1:rr:abc',
      'v1:RR:abc',
      'v1:xx:abc',
      'v1:rr:ABC',
      'v1:rr:ab-c',
      'v1:rr:abc def',
      `v1:rr:${'a'.repeat(17)}`,
      'v1:va:abc:9',
      'v1:va:abc:-1',
      'v1:va:abc:01',
      'v1:va:abc: 1',
      'v1:va:abc:1.0',
      'v1:va:abc:1:2',
      'v1:va:abc:１',
      'v1:rr:abcé',
      ' v1:rr:abc',
      'v1:rr:abc\n',
      `v1:rr:abc${'0'.repeat(60)}`,
      'x'.repeat(65),
      'v1:__proto__:abc',
      'v1:constructor:abc',
      'v1:toString:abc',
      undefined,
      null,
      42,
      { action: 'reroll', jobId: 'abc' },
    ];
    for (const s of bad) expect(decodeAction(s as string), JSON.stringify(s)).toBeUndefined();
  });

  it('accepts a mutated payload only when it is exactly what encodeAction writes', () => {
    // A small deterministic PRNG (mulberry32) so the fuzz is the same on every run.
    let state = 0x9e3779b9;
    const rand = (): number => {
      state = (state + 0x6d2b79f5) | 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
    const chars = Array.from('v12:rvasupincxdl0123456789abcz-_ V\u00e9\u{1F501}\u0000');
    let accepted = 0;
    let rejected = 0;
    for (let n = 0; n < 20_000; n++) {
      const seed = encodeAction({ action: pick(ACTIONS), jobId: 'ab12cd34', index: rand() < 0.5 ? undefined : 4 });
      const s = Array.from(seed);
      for (let k = 1 + Math.floor(rand() * 3); k > 0; k--) {
        const at = Math.floor(rand() * (s.length + 1));
        const op = rand();
        if (op < 0.33) s.splice(at, 1);
        else if (op < 0.66) s.splice(at, 0, pick(chars));
        else s.splice(at, 1, pick(chars));
      }
      const mutated = s.join('');
      const a = decodeAction(mutated);
      if (a) {
        accepted++;
        expect(encodeAction(a)).toBe(mutated);
      } else rejected++;
    }
    // Both paths must have been exercised for the property to mean anything.
    expect(accepted).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(1000);
  });
});
