import { describe, expect, it } from 'vitest';
import { RecentKeys } from '../src/adapters/recent-keys.js';

describe('RecentKeys', () => {
  it('remembers keys up to its limit and forgets the oldest first', () => {
    const keys = new RecentKeys(2);
    keys.add('a');
    keys.add('b');
    expect(keys.has('a') && keys.has('b')).toBe(true);
    keys.add('c');
    expect(keys.has('a')).toBe(false);
    expect(keys.has('b')).toBe(true);
    expect(keys.has('c')).toBe(true);
  });

  it('does not count a key twice', () => {
    const keys = new RecentKeys(2);
    keys.add('a');
    keys.add('a');
    keys.add('b');
    expect(keys.has('a')).toBe(true);
  });
});

describe('RecentKeys with a time window', () => {
  it('forgets a key once its window has passed, so a repeated reaction counts again', () => {
    let now = 1_000;
    const keys = new RecentKeys(10, { ttlMs: 5_000, now: () => now });
    keys.add('reaction:m1:u1:🔁');
    now += 4_999;
    expect(keys.has('reaction:m1:u1:🔁')).toBe(true);
    now += 1;
    expect(keys.has('reaction:m1:u1:🔁')).toBe(false);
  });

  it('restarts the window when a key is added again', () => {
    let now = 0;
    const keys = new RecentKeys(10, { ttlMs: 1_000, now: () => now });
    keys.add('k');
    now = 900;
    keys.add('k');
    now = 1_500;
    expect(keys.has('k')).toBe(true);
  });
});
