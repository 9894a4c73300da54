// 🔁 on a result message rerolls it for the member who reacted. The job is found through the
// store's message index (works after a restart, with nothing cached), else through the
// message's own buttons.
import type { MessageReaction, PartialMessageReaction, PartialUser, User } from 'discord.js';
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
import { CHANNEL_ATTACHMENT_LIMIT, channelTarget } from './target.js';

export const REROLL_EMOJI = '🔁';

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
  /** user:message:emoji already handled, so a gateway replay or a repeat does nothing. */
  readonly #seen = new RecentKeys(5_000);
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

    const member = message.guild?.members.cache.get(user.id);
    const roles = member ? [...member.roles.cache.keys()].filter((id) => id !== guildId) : [];
    const name = member?.displayName ?? user.globalName ?? user.username ?? 'member';
    const reply = await runCommand(
      {
        command: 'reroll',
        requester: { platform: 'discord', userId: user.id, name, roles },
        target: channelTarget(
          { channelId, guildId },
          { userId: user.id, replyTo: message.id, attachmentSizeLimit: CHANNEL_ATTACHMENT_LIMIT },
        ),
        via: 'reaction',
        action: { action: 'reroll', jobId: job.id },
        idempotencyKey: `discord:reaction:${message.id}:${user.id}`,
      },
      commands,
    );
    if (reply.queued) {
      follower.follow(reply.queued.job, reply.text);
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
