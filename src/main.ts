// The composition root: config → logger → store → engine worker → job service → adapters.
import { startDiscord } from './adapters/discord/index.js';
import { startTelegram } from './adapters/telegram/index.js';
import { startWeb, webAccessProblem } from './adapters/web/index.js';
import type { AdapterDeps, AdapterHandle } from './adapters/types.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createCore } from './core.js';
import { createLogger, redactSecrets } from './logging.js';
import { onStopSignals } from './stop-signals.js';

const MODEL_RESCAN_MS = 5 * 60_000;
/** How long recovery waits for the platforms to connect at start-up. */
const ADAPTER_WAIT_MS = 20_000;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function fail(message: string, code: number): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

function checkWebAccess(config: Config): void {
  const problem = webAccessProblem(config);
  if (problem) fail(problem, 2);
}

function readConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 1);
    fail(`config: could not be read (${err instanceof Error ? err.message : String(err)})`, 1);
  }
}

async function main(): Promise<void> {
  const config = readConfig();
  const { discordToken, telegramToken } = config.secrets;
  // Without a chat platform the studio is the way in; beside them it runs when web.enabled.
  const withWeb = config.web.enabled || (!discordToken && !telegramToken);
  if (withWeb) checkWebAccess(config);

  const log = createLogger(config);
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));

  const core = await createCore(config, log);
  const { jobs, commands } = core;
  const reportScan = () => {
    const scan = core.scan();
    for (const problem of scan.problems) log.warn({ model: problem.name, dir: problem.dir }, problem.reason);
    if (scan.models.length === 0) {
      log.warn({ dir: config.models.dir }, 'no usable model found; members will be told. See README "Models".');
    } else {
      log.info({ models: scan.models.map((m) => m.name) }, 'models found');
    }
  };
  reportScan();
  // Admins drop new model folders in while the bot runs; pick them up without a restart.
  const rescan = setInterval(() => {
    core
      .rescan()
      .then((changed) => changed && reportScan())
      .catch((err: unknown) => log.warn({ err }, 'model rescan failed'));
  }, MODEL_RESCAN_MS);
  rescan.unref();

  const adapters: AdapterHandle[] = [];
  // Listening from here on: a stop during the adapters' start-up is graceful too.
  let stopping = false;
  const shutdown = async (signal: string) => {
    stopping = true;
    clearInterval(rescan);
    log.info({ signal, graceSeconds: config.queue.shutdownGraceSeconds }, 'shutting down');
    // The job service refuses new work first, so the adapters stay up long enough to deliver
    // the job that finishes inside the grace period; a job that does not is put back in the queue.
    await jobs.stop(config.queue.shutdownGraceSeconds * 1000);
    await Promise.allSettled(adapters.map((a) => a.stop()));
    await core.close(0);
    log.info('stopped');
    log.flush();
    process.exit(0);
  };
  onStopSignals({
    graceful: (signal) => void shutdown(signal),
    duplicate: (signal) => log.debug({ signal }, 'repeated signal within a moment of the first: taken for a forwarded copy'),
    immediate: (signal) => {
      log.warn({ signal }, 'second signal: exiting now');
      log.flush();
      // Not process.exit(): tearing down while the engine thread is inside a native onnxruntime
      // run aborts the process (SIGABRT, a core dump). A kill is what was asked for; the running
      // job stays "running" in the store and resumes at the next start, like after any kill.
      process.kill(process.pid, 'SIGKILL');
    },
  });

  // A platform that refuses the bot for good (a revoked token) ends the process non-zero, so a
  // supervisor that restarts on failure notices; the adapter has logged the one-line reason.
  const onFatal = () => void core.close(0).finally(() => process.exit(1));
  const deps = (token: string): AdapterDeps => ({ config, jobs, commands, log, token, onFatal });
  const starters: [string, string | undefined, (d: AdapterDeps) => Promise<AdapterHandle>][] = [
    ['discord', discordToken, startDiscord],
    ['telegram', telegramToken, startTelegram],
  ];
  // Started side by side: one platform being slow to answer must not hold up the other.
  const starting = starters.map(async ([platform, token, start]) => {
    if (!token) return;
    try {
      adapters.push(await start(deps(token)));
      log.info({ platform }, 'adapter started');
    } catch (err) {
      log.error({ err, platform }, 'adapter could not start');
    }
  });
  if (withWeb) {
    starting.push(
      startWeb({ config, jobs, commands, log, engine: core.engine, history: core.store.jobs }).then(
        (web) => {
          adapters.push(web);
          const only = discordToken || telegramToken ? '' : '  (no DISCORD_TOKEN or TELEGRAM_TOKEN: the chat bots are off)';
          process.stdout.write(`Web studio: ${web.url}${only}\n`);
        },
        (err: unknown) => {
          log.error({ err, platform: 'web' }, 'adapter could not start');
          if (!discordToken && !telegramToken) process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        },
      ),
    );
  }
  let settled = false;
  const allSettled = Promise.all(starting).then(() => {
    settled = true;
    if (adapters.length > 0) return;
    log.fatal('no adapter could start; exiting');
    void core.close(0).finally(() => process.exit(1));
  });
  // Recovery waits for the adapters that connect promptly, so their members hear that their jobs
  // are back in the queue; a platform that cannot be reached does not hold up the others' jobs.
  await Promise.race([allSettled, delay(ADAPTER_WAIT_MS)]);
  if (settled && adapters.length === 0) return;
  if (adapters.length === 0) log.warn('no platform is connected yet; the queue starts and results wait for delivery');
  if (!stopping) await jobs.start();
}

main().catch((err: unknown) => {
  fail(`could not start: ${redactSecrets(err instanceof Error ? err.message : String(err))}`, 1);
});
