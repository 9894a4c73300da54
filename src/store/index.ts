// The only module that touches keyv. Everything durable (jobs, their indexes, member settings)
// goes through here; result images are files under the data directory, never values in keyv.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Keyv from 'keyv';
import KeyvSqlite from '@keyv/sqlite';
import { createKeyv as createRedisKeyv } from '@keyv/redis';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { Store } from '../jobs/types.js';
import { KeyvJobRepo } from './job-repo.js';
import { KeyvSettingsRepo } from './settings-repo.js';

export { isActiveJob, KeyvJobRepo } from './job-repo.js';

// No `_` or `%`: @keyv/sqlite's clear() matches the namespace with LIKE, where both are wildcards.
const NAMESPACE = 'clubbot';
const BUSY_TIMEOUT_MS = 5_000;
const REDIS_CONNECT_TIMEOUT_MS = 10_000;

export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

/** `sqlite://data/bot.sqlite` → absolute path (relative to the working directory); `:memory:` stays. */
export function sqlitePath(url: string): string {
  const raw = url.replace(/^sqlite:\/\//, '');
  if (raw === ':memory:' || raw === '') return ':memory:';
  return path.resolve(raw);
}

type OnError = (err: unknown) => void;

async function openSqlite(url: string, onError: OnError): Promise<Keyv> {
  const file = sqlitePath(url);
  if (file !== ':memory:') mkdirSync(path.dirname(file), { recursive: true });
  const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: BUSY_TIMEOUT_MS });
  const kv = new Keyv({ store: adapter, namespace: NAMESPACE, throwOnErrors: true });
  // Attached before the first query; keyv also re-throws to the caller (throwOnErrors), so a
  // failed job write is both logged here and answered by the caller.
  kv.on('error', onError);
  try {
    // @keyv/sqlite 4.0.8 has no `wal` option; the pragma persists in the file once set.
    // WAL lets readers (a backup, sqlite3 CLI) look while the bot writes; synchronous stays
    // FULL (the default), so a committed write survives a power cut, not only a crash.
    if (file !== ':memory:') await adapter.query('PRAGMA journal_mode=WAL');
    else await adapter.query('SELECT 1');
  } catch (err) {
    throw new StoreError(
      `storage.url: cannot open the SQLite file ${file} (${err instanceof Error ? err.message : String(err)})`,
    );
  }
  return kv;
}

async function openRedis(url: string, onError: OnError): Promise<Keyv> {
  const kv = createRedisKeyv(url, {
    namespace: NAMESPACE,
    throwOnErrors: true,
    throwOnConnectError: true,
    connectionTimeout: REDIS_CONNECT_TIMEOUT_MS,
  });
  kv.on('error', onError);
  // The client reconnects forever by default: without a deadline an unreachable Redis would
  // hang start-up silently instead of saying what is wrong.
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${REDIS_CONNECT_TIMEOUT_MS / 1000} s`)), REDIS_CONNECT_TIMEOUT_MS);
  });
  try {
    await Promise.race([kv.get('seq'), deadline]);
  } catch (err) {
    await kv.disconnect().catch(() => undefined);
    throw new StoreError(
      `storage.url: cannot reach Redis at ${redactUrl(url)} (${err instanceof Error ? err.message : String(err)})`,
    );
  } finally {
    clearTimeout(timer);
  }
  return kv;
}

/** A Redis URL may carry a password: keep it out of messages. */
function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

/** Opens the configured keyv (SQLite or Redis) with this module's namespace and error policy. */
export async function openKeyv(url: string, onError: OnError = () => undefined): Promise<Keyv> {
  return url.startsWith('sqlite://') ? openSqlite(url, onError) : openRedis(url, onError);
}

export async function createStore(config: Config, log?: Logger): Promise<Store> {
  const url = config.storage.url;
  const onError: OnError = (err) => log?.error({ err }, 'store error');
  const kv = await openKeyv(url, onError);
  const jobs = new KeyvJobRepo(kv);
  const settings = new KeyvSettingsRepo(kv);
  let closed: Promise<void> | undefined;
  return {
    jobs,
    settings,
    close: () => {
      closed ??= (async () => {
        await jobs.drain();
        await kv.disconnect();
      })();
      return closed;
    },
  };
}
