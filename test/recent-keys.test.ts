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
