// The bot reads every worker heartbeat key each second. A value under that pattern that is not a
// heartbeat (another program's key, a truncated write, a worker of another shape) must cost at
// most that one entry: the refresh goes on and the real workers stay listed.
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerDirectory } from '../src/jobs/redis/directory.js';
import { decodeBeat, keys, type WorkerBeat } from '../src/jobs/redis/protocol.js';
import { HAVE_REDIS, startRedis, type TestRedis } from './helpers/redis-server.js';

const beat = (id: string, extra: Partial<WorkerBeat> = {}): WorkerBeat => ({
  id,
  host: 'box',
  models: ['alpha'],
  done: 3,
  since: 1_000,
  at: 2_000,
  ...extra,
});

describe('heartbeat decoding', () => {
  it('keeps a whole heartbeat as written', () => {
    const full = beat('w1', { loaded: 'alpha', loadedModels: ['alpha', 'beta'], provider: 'cpu', imagesPerMinute: 4.5, current: { jobId: 'j1', step: 3, total: 20 } });
    expect(decodeBeat(JSON.stringify(full))).toEqual(full);
  });

  it('refuses values that are not a heartbeat', () => {
    for (const raw of ['', '{', 'null', '42', '"text"', '[]', '{}', JSON.stringify({ id: 7, models: [], at: 1 }), JSON.stringify({ id: 'w', models: 'alpha', at: 1 }), JSON.stringify({ id: 'w', models: [1], at: 1 }), JSON.stringify({ id: 'w', models: [] })]) {
      expect(decodeBeat(raw), raw).toBeUndefined();
    }
  });

  it('drops optional fields of the wrong type and bounds the loaded list', () => {
    const odd = { ...beat('w2'), loaded: 5, loadedModels: ['a', 2], provider: {}, current: { jobId: 'j', step: 'x', total: 2 }, imagesPerMinute: 'fast', done: null };
    const decoded = decodeBeat(JSON.stringify(odd))!;
    expect(decoded).toEqual({ ...beat('w2'), done: 0 });
    const many = Array.from({ length: 40 }, (_, i) => `m${i}`);
    expect(decodeBeat(JSON.stringify(beat('w3', { loadedModels: many })))!.loadedModels).toEqual(many.slice(-16));
  });
});

describe.skipIf(!HAVE_REDIS)('worker directory with odd values under the heartbeat keys', () => {
  let redis: TestRedis;
  let conn: Redis;

  beforeAll(async () => {
    redis = await startRedis();
    conn = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    conn.disconnect();
    await redis.stop();
  });

  it('lists the real workers and skips the rest', async () => {
    const k = keys('club');
    await conn.set(k.worker('good'), JSON.stringify(beat('good', { models: ['alpha', 'beta'], loadedModels: ['beta'] })));
    await conn.set(k.worker('null'), 'null');
    await conn.set(k.worker('array'), '[1,2]');
    await conn.set(k.worker('torn'), '{"id":"torn","models":["al');
    await conn.set(k.worker('shape'), JSON.stringify({ id: 'shape', host: 'x' }));
    const counts: number[] = [];
    const directory = new WorkerDirectory(conn, 'club', pino({ level: 'silent' }), (n) => counts.push(n));
    await directory.refresh();
    expect(directory.workers().map((w) => w.id)).toEqual(['good']);
    expect(directory.workers()[0]!.loadedModels).toEqual(['beta']);
    expect(directory.modelMissingFor('beta')).toBe(0);
    expect(counts).toEqual([1]);
  });
});
