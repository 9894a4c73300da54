// The Telegram adapter: grammY under @grammyjs/runner (updates are handled concurrently, so
// one member's request never waits behind another's), bounded auto-retry for 429 and 5xx,
// and the job events drawn as status edits and result photos.
import { autoRetry } from '@grammyjs/auto-retry';
import { run, type RunnerHandle } from '@grammyjs/runner';
import { Bot, GrammyError, type Transformer } from 'grammy';
import type { BotCommand } from 'grammy/types';
import { commandDefinitions } from '../../../commands/definitions.js';
import { statusText } from '../../../commands/status.js';
import type { Config } from '../../config/schema.js';
import type { JobEvent } from '../../jobs/types.js';
import type { AdapterDeps, AdapterHandle } from '../types.js';
import { Deliveries } from './deliver.js';
import { classifyFailure, describeFailure } from './errors.js';
import { StatusBoard } from './status.js';
import { UpdateHandlers } from './updates.js';

/** message_reaction is not in Telegram's default list: it must be asked for. */
export const ALLOWED_UPDATES = ['message', 'callback_query', 'message_reaction'] as const;
/** auto-retry's defaults are unbounded; a job slot must not hang for hours on a flood wait. */
export const RETRY = { maxRetryAttempts: 3, maxDelaySeconds: 30 } as const;
const POLL_TIMEOUT_SECONDS = 30;
/** A request may take this long beyond a long poll's own wait before it counts as failed. */
const REQUEST_MARGIN_SECONDS = 15;
const POLL_RETRY_MS = 3_000;
/** How long stop() waits for a delivery under way. */
const STOP_FLUSH_MS = 15_000;

export async function startTelegram(deps: AdapterDeps): Promise<AdapterHandle> {
  const { config, jobs, commands, token } = deps;
  const log = deps.log.child({ platform: 'telegram' });
  // Bot.token is a public enumerable field: the bot object must never reach a log line.
  // grammY's default request timeout is 500 s: an unreachable API would hang start-up silently.
  const bot = new Bot(token, {
    client: { apiRoot: config.telegram.apiRoot, timeoutSeconds: POLL_TIMEOUT_SECONDS + REQUEST_MARGIN_SECONDS },
  });
  bot.api.config.use(autoRetry({ ...RETRY, rethrowHttpErrors: true }));
  bot.api.config.use(logPollingTrouble(log));

  bot.botInfo = await connect(bot, log);
  // A webhook left set by another deployment makes every getUpdates answer 409.
  await bot.api.deleteWebhook().catch((err: unknown) => log.warn(describeFailure(err), 'telegram: deleteWebhook failed'));
  await bot.api
    .setMyCommands(menu(config))
    .catch((err: unknown) => log.warn(describeFailure(err), 'telegram: the command menu could not be set'));

  const board = new StatusBoard({ api: bot.api, config, log });
  const deliveries = new Deliveries({ api: bot.api, jobs, config, log });
  const handlers = new UpdateHandlers({
    api: bot.api,
    config,
    jobs,
    commands,
    log,
    board,
    botUsername: () => bot.botInfo.username,
  });

  let lastUpdateId = -1;
  let intake = true;
  bot.use(async (ctx, next) => {
    lastUpdateId = Math.max(lastUpdateId, ctx.update.update_id);
    if (intake) await next();
  });
  bot.on('message', (ctx) => handlers.onMessage(ctx));
  bot.on('callback_query', (ctx) => handlers.onCallback(ctx));
  bot.on('message_reaction', (ctx) => handlers.onReaction(ctx));
  bot.catch((err) => {
    log.error({ updateId: err.ctx.update.update_id, ...describeFailure(err.error) }, 'telegram: an update could not be handled');
  });

  const onEvent = (event: JobEvent) => {
    const { job } = event;
    if (job.target.platform !== 'telegram') return;
    try {
      switch (event.type) {
        // The request handler shows the queued reply itself (it carries the parser's notes).
        case 'queued':
          return;
        case 'moved':
        case 'resumed':
          return board.show(job, statusText(event));
        case 'started':
        case 'progress':
          board.show(job, statusText(event));
          return board.drawing(job);
        case 'done': {
          const statusMessageId = board.finish(job);
          void deliveries.deliver(job, statusMessageId);
          return;
        }
        case 'failed':
        case 'cancelled':
          return board.settle(job, statusText(event));
      }
    } catch (err) {
      log.error({ jobId: job.id, err }, 'telegram: job event not drawn');
    }
  };
  const unsubscribe = jobs.on(onEvent);

  const runner: RunnerHandle = run(bot, {
    runner: {
      fetch: { allowed_updates: [...ALLOWED_UPDATES], timeout: POLL_TIMEOUT_SECONDS },
      // Polling errors are logged through pino (logPollingTrouble), not printed to the console.
      silent: true,
      // The runner's default backoff doubles without a cap (a long outage would mean hours of
      // silence after it); a steady pace and no deadline ride out any outage. 401 and 409 still end it.
      retryInterval: POLL_RETRY_MS,
      maxRetryTime: Number.POSITIVE_INFINITY,
    },
  });
  let stopped = false;
  runner.task()?.catch((err: unknown) => {
    if (stopped) return;
    // 401 and 409 end polling for good; restarting would only loop.
    log.error({ ...describeFailure(err) }, pollingStopped(err));
  });

  const pending = (async () => {
    for (const job of await jobs.pendingDeliveries('telegram')) {
      if (stopped) return;
      await deliveries.deliver(job, null);
    }
  })().catch((err: unknown) => log.error({ err }, 'telegram: pending deliveries could not be read'));

  log.info({ username: bot.botInfo.username }, 'telegram: polling');

  return {
    platform: 'telegram',
    async stop() {
      if (stopped) return;
      stopped = true;
      intake = false;
      if (runner.isRunning()) await runner.stop();
      // The runner does not confirm the last batch; without this, it is delivered again at the next start.
      if (lastUpdateId >= 0) {
        await bot.api.getUpdates({ offset: lastUpdateId + 1, limit: 1, timeout: 0 }).catch(() => undefined);
      }
      await pending;
      await Promise.race([deliveries.idle(), new Promise((resolve) => setTimeout(resolve, STOP_FLUSH_MS).unref())]);
      unsubscribe();
      board.close();
      deliveries.close();
      log.info('telegram: stopped');
    },
  };
}

/** Telegram's menu from the shared definitions (names 1–32 of a-z0-9_, descriptions 1–256). */
export function menu(config: Config): BotCommand[] {
  return commandDefinitions(config)
    .filter((def) => /^[a-z0-9_]{1,32}$/.test(def.name))
    .map((def) => ({ command: def.name, description: def.description.slice(0, 256) }));
}

const CONNECT_RETRY_MAX_MS = 60_000;

/**
 * getMe until Telegram answers. A rejected token is final; an unreachable API (network down at
 * boot) is retried with a capped backoff and a log line each time, instead of grammY's silent
 * retries, so an admin can see why the bot is not answering yet.
 */
async function connect(bot: Bot, log: AdapterDeps['log']): Promise<Bot['botInfo']> {
  for (let attempt = 1, wait = 1_000; ; attempt++, wait = Math.min(wait * 2, CONNECT_RETRY_MAX_MS)) {
    try {
      return await bot.api.getMe();
    } catch (err) {
      if (err instanceof GrammyError) throw new Error(startupFailure(err));
      log.warn({ attempt, retryInSeconds: wait / 1000, ...describeFailure(err) }, 'telegram: API unreachable; retrying');
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

function startupFailure(err: unknown): string {
  if (err instanceof GrammyError && err.error_code === 401) {
    return 'Telegram rejected the bot token (401 Unauthorized). Check TELEGRAM_TOKEN (from @BotFather).';
  }
  return `Telegram could not be reached at start-up (${Object.values(describeFailure(err)).join(' ')}).`;
}

function pollingStopped(err: unknown): string {
  if (err instanceof GrammyError && err.error_code === 409) {
    return 'telegram: polling stopped: another bot instance is polling with this token (409 Conflict). Stop the other one and restart this bot.';
  }
  if (err instanceof GrammyError && err.error_code === 401) {
    return 'telegram: polling stopped: Telegram no longer accepts the bot token (401). Set a valid TELEGRAM_TOKEN and restart.';
  }
  return 'telegram: polling stopped after repeated errors; restart the bot to resume.';
}

/** Logs failed getUpdates calls (the runner retries them quietly) without their URL. */
function logPollingTrouble(log: AdapterDeps['log']): Transformer {
  return async (prev, method, payload, signal) => {
    try {
      const result = await prev(method, payload, signal);
      if (method === 'getUpdates' && !result.ok) {
        const level = result.error_code === 401 || result.error_code === 409 ? 'error' : 'warn';
        log[level]({ code: result.error_code, description: result.description }, 'telegram: getUpdates failed');
      }
      return result;
    } catch (err) {
      if (method === 'getUpdates' && !signal?.aborted && classifyFailure(err) !== 'fatal') {
        log.warn(describeFailure(err), 'telegram: getUpdates failed');
      }
      throw err;
    }
  };
}
