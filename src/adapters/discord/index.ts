// The Discord adapter: a discord.js client whose events become command requests, and a job
// follower that draws job events as message edits. No business rules live here.
import { Client, Events, GatewayIntentBits, Partials, type RateLimitData } from 'discord.js';
import { openAdapterState } from '../../store/adapter-state.js';
import type { AdapterDeps, AdapterHandle } from '../types.js';
import { describeFailure, scrubTokens } from './errors.js';
import { JobFollower } from './follow.js';
import { InteractionHandler } from './interactions.js';
import { Outbox } from './outbox.js';
import { guildUploadLimit } from './target.js';
import { ReactionHandler } from './reactions.js';
import { StatusNotes } from './status-notes.js';

/** How long stop() lets deliveries in flight finish before the client goes. */
const STOP_GRACE_MS = 10_000;

export async function startDiscord(deps: AdapterDeps): Promise<AdapterHandle> {
  const { config, jobs, commands } = deps;
  const log = deps.log.child({ platform: 'discord' });
  if (!deps.token) throw new Error('Discord needs a bot token: set DISCORD_TOKEN in the environment.');

  const droppableEdits = new Set<string>();
  const intents = [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions];
  if (config.discord.allowDMs) intents.push(GatewayIntentBits.DirectMessages, GatewayIntentBits.DirectMessageReactions);
  const client = new Client({
    intents,
    // Results are often not cached (after a restart, or simply old): reactions on them must
    // still arrive, as partials.
    partials: [Partials.Message, Partials.Reaction, Partials.User, Partials.Channel],
    rest: {
      api: config.discord.apiUrl,
      // A progress edit that hits a rate limit is dropped (the throttle sends a newer one
      // later) instead of waiting in discord.js's queue ahead of the result.
      rejectOnRateLimit: (data: RateLimitData) => [...droppableEdits].some((marker) => data.url.includes(marker)),
    },
  });

  let signalReady!: () => void;
  const ready = new Promise<void>((resolve) => (signalReady = resolve));
  const outbox = new Outbox(client.rest);
  const uploadLimit = (guildId: string | undefined) => guildUploadLimit(guildId ? client.guilds.cache.get(guildId)?.premiumTier : undefined);
  const state = await openAdapterState<never>(config, 'discord', (err) => log.error({ err }, 'discord: notes store error'));
  const notes = new StatusNotes(state);
  const follower = new JobFollower({ config, jobs, outbox, log, droppableEdits, ready, uploadLimit, notes });
  const interactions = new InteractionHandler({ config, commands, follower, outbox, log });
  const reactions = new ReactionHandler({ config, jobs, commands, follower, outbox, log, botUserId: () => client.user?.id });

  // Listen before logging in, so no job event between now and READY is missed.
  const unsubscribe = jobs.on(follower.onEvent);
  client.on(Events.InteractionCreate, interactions.onInteraction);
  client.on(Events.MessageReactionAdd, reactions.onReactionAdd);
  client.on(Events.MessageReactionRemove, reactions.onReactionRemove);
  // Without these listeners an 'error' event would throw and take the process down.
  client.on(Events.Error, (err) => log.error({ failure: describeFailure(err) }, 'discord client error'));
  client.on(Events.ShardError, (err, shardId) => log.warn({ failure: describeFailure(err), shardId }, 'discord gateway error'));
  client.on(Events.ShardDisconnect, (event, shardId) => log.warn({ code: event.code, shardId }, 'discord gateway disconnected'));
  // After an outage discord.js resumes the session by itself, and Discord replays what was missed.
  client.on(Events.ShardResume, (shardId, replayed) => log.info({ shardId, replayed }, 'discord gateway resumed; missed events replayed'));
  // A second READY means the old session could not be resumed: what happened meanwhile is gone.
  let sessions = 0;
  client.on(Events.ShardReady, (shardId) => {
    if (++sessions > 1) {
      log.warn({ shardId }, 'discord gateway started a new session: commands and reactions sent while it was down were not replayed and are lost');
    }
  });
  client.on(Events.Warn, (message) => log.warn({ message: scrubTokens(message) }, 'discord warning'));
  client.rest.on('rateLimited', (info) =>
    log.debug({ route: info.route, method: info.method, retryAfter: info.retryAfter, global: info.global }, 'discord rate limit'),
  );

  const loggedIn = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  try {
    await client.login(deps.token);
    await loggedIn;
  } catch (err) {
    unsubscribe();
    await client.destroy().catch(() => undefined);
    await state.close().catch(() => undefined);
    const f = describeFailure(err);
    throw new Error(`Discord login failed: ${f.message}`);
  }
  signalReady();
  log.info({ user: client.user?.tag, guilds: client.guilds.cache.size }, 'discord adapter ready');

  // Results that finished while the bot was away (or whose upload failed) go out now.
  const pending = follower
    .deliverPending()
    .catch((err: unknown) => log.error({ failure: describeFailure(err) }, 'pending deliveries failed'));

  let stopped = false;
  return {
    platform: 'discord',
    async stop() {
      if (stopped) return;
      stopped = true;
      interactions.stop();
      reactions.stop();
      unsubscribe();
      await follower.close(STOP_GRACE_MS);
      await pending;
      await client.destroy();
      await state.close().catch((err: unknown) => log.warn({ err }, 'discord: notes store did not close cleanly'));
      log.info('discord adapter stopped');
    },
  };
}
