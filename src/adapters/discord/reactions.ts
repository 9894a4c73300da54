// 🔁 on a result message rerolls it for the member who reacted. The job is found through the
// store's message index (works after a restart, with nothing cached), else through the
// message's own buttons. A reroll is taken only where the bot can post its result.
import { PermissionFlagsBits, type MessageReaction, type PartialMessageReaction, type PartialUser, type User } from 'discord.js';
import type { Logger } from 'pino';
import { decodeAction } from '../../../commands/codec.js';
import { runCommand } from '../../../commands/index.js';
import type { CommandContext } from '../../../commands/types.js';
import type { Config } from '../../config/schema.js';
import type { Job, JobService } from '../../jobs/types.js';
import { RecentKeys } from '../recent-keys.js';
import { describeFailure } from './errors.js';
import type { JobFollower } from './follow.js';
import type { Outbox } from './outbox.js';
import { placeRefusal } from './places.js';
import { channelTarget } from './target.js';

export const REROLL_EMOJI = '🔁';
/**
 * A gateway RESUME replays missed events, a reaction among them, within the session's life; a
 * reaction seen again inside this window is that replay. Removing the reaction ends the window
 * at once, so remove-and-add-again is a new request.
 */
export const REACTION_REPLAY_WINDOW_MS = 10 * 60_000;

/** What posting a result under the reacted message takes (developers/topics/permissions.mdx). */
const NEEDED: [bigint, string][] = [
  [PermissionFlagsBits.ViewChannel, 'View Channel'],
  [PermissionFlagsBits.SendMessages, 'Send Messages'],
  [PermissionFlagsBits.AttachFiles, 'Attach Files'],
  [PermissionFlagsBits.ReadMessageHistory, 'Read Message History'],
];
const NEEDED_IN_THREADS: [bigint, string][] = [
  [PermissionFlagsBits.ViewChannel, 'View Channel'],
  [PermissionFlagsBits.SendMessagesInThreads, 'Send Messages in Threads'],
  [PermissionFlagsBits.AttachFiles, 'Attach Files'],
  [PermissionFlagsBits.ReadMessageHistory, 'Read Message History'],
];

export interface ReactionDeps {
  config: Config;
  jobs: JobService;
  commands: CommandContext;
  follower: JobFollower;
  outbox: Outbox;
  log: Logger;
  botUserId: () => string | undefined;
}

export class ReactionHandler {
  readonly #deps: ReactionDeps;
  /** user:message:emoji already handled, so a gateway replay does nothing. */
  readonly #seen = new RecentKeys(5_000, { ttlMs: REACTION_REPLAY_WINDOW_MS });
  #stopped = false;

  constructor(deps: ReactionDeps) {
    this.#deps = deps;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** The client's messageReactionAdd listener; never throws. */
  readonly onReactionAdd = (reaction: MessageReaction | PartialMessageReaction, user: User | PartialUser): void => {
    if (this.#stopped) return;
    if (reaction.emoji.name !== REROLL_EMOJI) return;
    if (user.id === this.#deps.botUserId() || user.bot) return;
    const message = reaction.message;
    const key = `${user.id}:${message.id}:${REROLL_EMOJI}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.#reroll(reaction, user).catch((err: unknown) =>
      this.#deps.log.error({ failure: describeFailure(err), messageId: message.id }, 'reaction handling failed'),
    );
  };

  /** The client's messageReactionRemove listener: the next 🔁 by this member is a new request. */
  readonly onReactionRemove = (reaction: MessageReaction | PartialMessageReaction, user: User | PartialUser): void => {
    if (reaction.emoji.name !== REROLL_EMOJI) return;
    this.#seen.delete(`${user.id}:${reaction.message.id}:${REROLL_EMOJI}`);
  };

  /** Names of the permissions the bot lacks to post a result here; undefined when unknown (not cached). */
  #missingPermissions(reaction: MessageReaction | PartialMessageReaction): string[] | undefined {
    const channel = reaction.message.channel;
    const me = reaction.message.guild?.members.me;
    if (!channel || !me || !('permissionsFor' in channel) || channel.isDMBased()) return undefined;
    const perms = channel.permissionsFor(me);
    if (!perms) return undefined;
    const needed = channel.isThread() ? NEEDED_IN_THREADS : NEEDED;
    return needed.filter(([bit]) => !perms.has(bit)).map(([, name]) => name);
  }

  /**
   * Tells the member that a reroll cannot be posted here: in the channel when the bot may write
   * there at all (without a reply reference, which needs Read Message History), else by DM.
   */
  async #refuseForPermissions(channelId: string, userId: string, missing: string[], canWrite: boolean): Promise<void> {
    const text =
      `<@${userId}> I cannot post a reroll in <#${channelId}>: I am missing ${missing.join(', ')} there. ` +
      'A moderator can give me those permissions.';
    const { outbox, log } = this.#deps;
    try {
      if (canWrite) await outbox.send(channelId, { content: text, mentionUsers: [userId] });
      else await outbox.dm(userId, { content: text });
    } catch (err) {
      log.warn({ failure: describeFailure(err), channelId }, 'could not tell a member why a reroll was refused');
    }
  }

  async #reroll(reaction: MessageReaction | PartialMessageReaction, user: User | PartialUser): Promise<void> {
    const { config, commands, follower, outbox, log } = this.#deps;
    const message = reaction.message;
    const channelId = message.channelId;
    const guildId = message.guildId;
    const channel = message.channel;
    const parentId = channel && 'parentId' in channel && channel.isThread() ? channel.parentId : null;
    if (placeRefusal(config, { guildId, channelId, parentId })) return;

    const job = await this.#findJob(channelId, message.id);
    if (!job) return;
    const missing = this.#missingPermissions(reaction);
    if (missing && missing.length > 0) {
      log.info({ channelId, missing }, 'reroll refused: the bot cannot post a result here');
      const canWrite = !missing.some((m) => m === 'View Channel' || m.startsWith('Send Messages'));
      await this.#refuseForPermissions(channelId, user.id, missing, canWrite);
      return;
    }

    const member = message.guild?.members.cache.get(user.id);
    const roles = member ? [...member.roles.cache.keys()].filter((id) => id !== guildId) : [];
    const name = member?.displayName ?? user.globalName ?? user.username ?? 'member';
    const reply = await runCommand(
      {
        command: 'reroll',
        requester: { platform: 'discord', userId: user.id, name, roles },
        target: channelTarget({ channelId, guildId }, { userId: user.id, replyTo: message.id }),
        via: 'reaction',
        action: { action: 'reroll', jobId: job.id },
        // Replays are caught by #seen above; a later 🔁 by the same member is a new request, so
        // the key names this reaction (the moment it was taken), not the member and message alone.
        idempotencyKey: `discord:reaction:${message.id}:${user.id}:${Date.now()}`,
      },
      commands,
    );
    if (reply.queued) {
      void follower.follow(reply.queued.job, reply.text);
      return;
    }
    if (!reply.ok) {
      // There is no interaction to answer privately; a short reply under the result says why.
      await outbox
        .send(channelId, {
          content: `<@${user.id}> ${reply.text}`.slice(0, 2000),
          mentionUsers: [user.id],
          replyTo: message.id,
        })
        .catch((err: unknown) => log.warn({ failure: describeFailure(err) }, 'could not explain a refused reaction'));
    }
  }

  async #findJob(channelId: string, messageId: string): Promise<Job | undefined> {
    const { jobs, outbox, botUserId, log } = this.#deps;
    const indexed = await jobs.findByMessage('discord', channelId, messageId);
    if (indexed) return indexed;
    // Not in the index (delivered by an older version, or the index lost it): the message's
    // own reroll button names the job. Only the bot's own messages are trusted for this.
    try {
      const msg = await outbox.fetch(channelId, messageId);
      if (msg.author.id !== botUserId()) return undefined;
      for (const row of msg.components ?? []) {
        if (!('components' in row)) continue;
        for (const c of row.components) {
          const action = 'custom_id' in c ? decodeAction(c.custom_id) : undefined;
          if (action?.action === 'reroll') return jobs.get(action.jobId);
        }
      }
    } catch (err) {
      log.debug({ failure: describeFailure(err) }, 'could not fetch a reacted message');
    }
    return undefined;
  }
}
