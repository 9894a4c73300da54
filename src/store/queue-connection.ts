// The one place that opens connections to the queue's Redis (BullMQ and its side keys: results,
// cancels, worker heartbeats). Like keyv, no other module creates a Redis client.
import { Redis, type RedisOptions } from 'ioredis';

export type QueueRole = 'producer' | 'worker' | 'subscriber';

/** A Redis URL may carry a password: keep it out of messages. */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/**
 * producer: the bot's side. Commands fail fast while Redis is away (no offline queue, few
 * retries), so a member hears "unavailable" at once instead of waiting on a hung request.
 * worker / subscriber: blocking reads and subscriptions, which BullMQ wants retried forever.
 * All of them reconnect by themselves, with a capped back-off.
 */
export function openQueueConnection(url: string, role: QueueRole): Redis {
  const options: RedisOptions = {
    lazyConnect: false,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    ...(role === 'producer'
      ? { maxRetriesPerRequest: 1, enableOfflineQueue: false }
      : { maxRetriesPerRequest: null, enableOfflineQueue: true }),
  };
  return new Redis(url, options);
}

/** Resolves once the connection is ready, or rejects with a clear message after timeoutMs. */
export async function waitUntilReady(conn: Redis, url: string, timeoutMs: number): Promise<void> {
  if (conn.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`queue.redis.url: cannot reach Redis at ${redactRedisUrl(url)} (no answer within ${timeoutMs / 1000} s)`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      conn.off('ready', onReady);
    };
    conn.on('ready', onReady);
  });
}

/**
 * What the queue needs from Redis, read with CONFIG GET. noeviction is required (an evicted key
 * is a lost job); AOF is what makes an accepted job survive a Redis restart. Returns the
 * problems in words; a server that refuses CONFIG (some managed services) is reported, not fatal.
 */
export async function redisSettingsProblems(conn: Redis): Promise<{ fatal: string[]; warnings: string[] }> {
  const fatal: string[] = [];
  const warnings: string[] = [];
  try {
    const policy = (await conn.config('GET', 'maxmemory-policy')) as string[];
    const aof = (await conn.config('GET', 'appendonly')) as string[];
    if (policy[1] !== 'noeviction') {
      fatal.push(
        `Redis has maxmemory-policy ${policy[1] ?? '?'}: queued jobs could be evicted. Set "maxmemory-policy noeviction" in redis.conf (or CONFIG SET maxmemory-policy noeviction).`,
      );
    }
    if (aof[1] !== 'yes') {
      warnings.push('Redis runs without AOF (appendonly no): a Redis restart can lose accepted jobs. Set "appendonly yes" in redis.conf.');
    }
  } catch (err) {
    warnings.push(`could not read the Redis settings (${err instanceof Error ? err.message : String(err)}); make sure of maxmemory-policy noeviction and appendonly yes`);
  }
  return { fatal, warnings };
}
