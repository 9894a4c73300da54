// The Telegram adapter: grammY with its own polling loop (polling.ts: a durable inbox before
// Telegram is told an update arrived, 409/429/401 handled), updates handled concurrently so one
// member's request never waits behind another's, bounded auto-retry for 429 and 5xx with a flood
// gate over it, and the job events drawn as status edits and result photos.
import { autoRetry } from '@grammyjs/auto-retry';
import { Bot, BotError, GrammyError } from 'grammy';
import type { BotCommand, Update } from 'grammy/types';
import { commandDefinitions } from '../../../commands/definitions.js';
import { statusText } from '../../../commands/status.js';
import type { Config } from '../../config/schema.js';
import type { JobEvent } from '../../jobs/types.js';
import { openAdapterState } from '../../store/adapter-state.js';
import type { AdapterDeps, AdapterHandle } from '../types.js';
import { Deliveries } from './deliver.js';
import { describeFailure } from './errors.js';
import { FloodGate } from './flood.js';
import { Poller, type AllowedUpdate, type PollTiming } from './polling.js';
import { StatusBoard } from './status.js';
import { UpdateHandlers } from './updates.js';

/** message_reaction is not in Telegram's default list: it must be asked for. */
export const ALLOWED_UPDATES: readonly AllowedUpdate[] = ['message', 'callback_query', 'message_reaction'];
/**
 * auto-retry's defaults are unbounded; a request handler must not hang for hours on a flood wait.
 * A longer wait comes back as a 429 and the flood gate holds every later call for that chat until
 * Telegram's retry_after has passed.
 */
export const RETRY = { maxRetryAttempts: 3, maxDelaySeconds: 30 } as const;
const POLL_TIMEOUT_SECONDS = 30;
/** A request may take this long beyond a long poll's own wait before it counts as failed. */
const REQUEST_MARGIN_SECONDS = 15;
/** How long stop() waits for a delivery under way. */
const STOP_FLUSH_MS = 15_000;

/** Knobs for tests; production uses the defaults. */
export interface TelegramOptions {
  polling?: Partial<PollTiming>;
}

export async function startTelegram(deps: AdapterDeps, options: TelegramOptions = {}): Promise<AdapterHandle> {
  const { config, jobs, commands, token } = deps;
  const log = deps.log.child({ platform: 'telegram' });
  // Bot.token is a public enumerable field: the bot object must never reach a log line.
  // grammY's default request timeout is 500 s: an unreachable API would hang start-up silently.
  const bot = new Bot(token, {
    client: { apiRoot: config.telegram.apiRoot, timeoutSeconds: POLL_TIMEOUT_SECONDS + REQUEST_MARGIN_SECONDS },
  });
  const flood = new FloodGate({
    onWait: ({ method, scope, waitMs }) => log.info({ method, chatId: scope, waitMs }, 'telegram: waiting out a flood limit before calling'),
  });
  bot.api.config.use(autoRetry({ ...RETRY, rethrowHttpErrors: true }));
  // Outermost: it sees what auto-retry gave up on, and holds every later call until the wait is over.
  bot.api.config.use(flood.transformer);

  bot.botInfo = await connect(bot, log);
  // A webhook left set by another deployment makes every getUpdates answer 409.
  await bot.api.deleteWebhook().catch((err: unknown) => log.warn(describeFailure(err), 'telegram: deleteWebhook failed'));
  await bot.api
    .setMyCommands(menu(config))
    .catch((err: unknown) => log.warn(describeFailure(err), 'telegram: the command menu could not be set'));

  const state = await openAdapterState<Update>(config, 'telegram', (err) => log.error({ err }, 'telegram: inbox store error'));
  const board = new StatusBoard({ api: bot.api, config, log });
  const deliveries = new Deliveries({ api: bot.api, jobs, config, log, notes: state });
  let stopped = false;
  const poller: Poller = new Poller({
    api: bot.api,
    state,
    log,
    allowedUpdates: ALLOWED_UPDATES,
    // Errors in handlers end up in bot.catch below; handleUpdate rethrows them as BotError.
    handle: async (update) => {
      await bot.handleUpdate(update).catch((err: unknown) => (err instanceof BotError ? bot.errorHandler(err) : Promise.reject(err)));
    },
    fatal: (reason) => {
      stopped = true;
      deps.onFatal?.(reason);
    },
    ...(options.polling ? { timing: options.polling } : {}),
  });
  const handlers = new UpdateHandlers({
    api: bot.api,
    config,
    jobs,
    commands,
    log,
    board,
    botUsername: () => bot.botInfo.username,
    placeholders: poller,
    notes: state,
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
        case 'stage':
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

  await poller.start();

  const pending = (async () => {
    for (const job of await jobs.pendingDeliveries('telegram')) {
      if (stopped) return;
      await deliveries.deliver(job, null);
    }
  })().catch((err: unknown) => log.error({ err }, 'telegram: pending deliveries could not be read'));

  log.info({ username: bot.botInfo.username }, 'telegram: polling');

  let stopping: Promise<void> | undefined;
  return {
    platform: 'telegram',
    stop() {
      stopping ??= (async () => {
        stopped = true;
        await poller.stop(STOP_FLUSH_MS);
        await pending;
        await Promise.race([deliveries.idle(), new Promise((resolve) => setTimeout(resolve, STOP_FLUSH_MS).unref())]);
        unsubscribe();
        board.close();
        deliveries.close();
        await state.close().catch(() => undefined);
        log.info('telegram: stopped');
      })();
      return stopping;
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
      const retryAfter = err instanceof GrammyError && err.error_code === 429 ? err.parameters.retry_after : undefined;
      if (err instanceof GrammyError && retryAfter === undefined) throw new Error(startupFailure(err));
      // A flood wait is honoured to the second; anything else backs off.
      const pause = retryAfter !== undefined ? retryAfter * 1000 : wait;
      log.warn({ attempt, retryInSeconds: pause / 1000, ...describeFailure(err) }, 'telegram: API unreachable; retrying');
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

function startupFailure(err: unknown): string {
  if (err instanceof GrammyError && err.error_code === 401) {
    return 'Telegram rejected the bot token (401 Unauthorized). Check TELEGRAM_TOKEN (from @BotFather).';
  }
  return `Telegram could not be reached at start-up (${Object.values(describeFailure(err)).join(' ')}).`;
}
