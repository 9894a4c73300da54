// `npm run worker`: a remote engine worker for the Redis queue backend. It loads this host's
// models with this host's engine settings (config/local.jsonc or BOT_CONFIG, as the bot does;
// QUEUE_REDIS_URL points it at the bot's Redis) and draws jobs until SIGINT/SIGTERM, after which
// it finishes the job in hand. It knows no chats and needs no platform tokens.
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createConfiguredEngine } from './core.js';
import { startEngineWorker } from './jobs/redis/engine-worker.js';
import { createLogger } from './logging.js';
import { onStopSignals } from './stop-signals.js';
import { openQueueConnection, redactRedisUrl, redisSettingsProblems, waitUntilReady } from './store/queue-connection.js';

const CONNECT_WAIT_MS = 30_000;

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    fail(err instanceof ConfigError ? err.message : `config: could not be read (${err instanceof Error ? err.message : String(err)})`);
  }
}

const config = readConfig();
const log = createLogger(config).child({ role: 'worker' });
const url = config.queue.redis.url;
const connection = openQueueConnection(url, 'worker');
const subscriber = openQueueConnection(url, 'subscriber');
for (const conn of [connection, subscriber]) conn.on('error', (err: Error) => log.debug({ err: err.message }, 'Redis connection error'));
try {
  await waitUntilReady(connection, url, CONNECT_WAIT_MS);
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}
const { fatal, warnings } = await redisSettingsProblems(connection);
for (const w of warnings) log.warn(w);
if (fatal.length > 0) fail(`queue.redis.url (${redactRedisUrl(url)}): ${fatal.join(' ')}`);

const engine = createConfiguredEngine(config, log);
const worker = await startEngineWorker({ config, engine, log, connection, subscriber });

// The bot's signal rules: under `npm run worker` a Ctrl-C arrives twice (npm forwards its copy),
// and that copy must not count as the second signal that skips the job in hand.
onStopSignals({
  graceful: (signal) => {
    log.info({ signal }, 'stopping after the job in hand');
    worker
      .close()
      .then(() => engine.close())
      .then(() => {
        connection.disconnect();
        subscriber.disconnect();
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, 'unclean stop');
        process.exit(1);
      });
  },
  duplicate: (signal) => log.debug({ signal }, 'repeated signal within a moment of the first: taken for a forwarded copy'),
  immediate: () => process.exit(130), // a second signal: stop now
});
