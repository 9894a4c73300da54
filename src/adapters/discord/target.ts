// What the adapter writes into a job's ReplyTarget.handle, and reads back when it delivers —
// possibly after a restart, so everything needed is in the stored job, not in memory.
import type { ReplyTarget } from '../../jobs/types.js';

/** The job answers through an interaction's deferred reply (slash commands, buttons). */
export interface InteractionHandle {
  kind: 'interaction';
  interactionId: string;
  applicationId: string;
  token: string;
  /** ms since epoch; the token dies 15 minutes later. */
  createdAt: number;
  /** The member to mention when the answer has to go to the channel instead. */
  userId: string;
  /** Bytes per file this channel accepts (from the interaction). */
  attachmentSizeLimit: number;
}

/** The job answers with channel messages (🔁 reactions: there is no interaction). */
export interface ChannelHandle {
  kind: 'channel';
  userId: string;
  /** The result message the reaction was on; the answer replies to it. */
  replyTo: string | null;
}

export type DiscordHandle = InteractionHandle | ChannelHandle;

/** Default per-file upload limit; the interaction tells the real one. */
export const DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024;
/** Deliver through the channel once a token is this old: it dies at 15 minutes, uploads take time. */
export const TOKEN_SAFE_AGE_MS = 14 * 60_000;
/** An interaction token's whole life (developers/interactions/receiving-and-responding.mdx). */
export const TOKEN_LIFETIME_MS = 15 * 60_000;

const MiB = 1024 * 1024;
/** Per-file upload limit of the bot's own messages by the guild's boost tier: 10, 10, 50, 100 MiB. */
const GUILD_UPLOAD_LIMITS = [10 * MiB, 10 * MiB, 50 * MiB, 100 * MiB];

/**
 * What a bot message may carry in a guild. The interaction's attachment_size_limit counts the
 * member's Nitro, so it is right only for the interaction's own webhook, never for channel posts.
 */
export function guildUploadLimit(premiumTier: number | undefined): number {
  return GUILD_UPLOAD_LIMITS[Math.max(0, Math.min(3, premiumTier ?? 0))] ?? DEFAULT_ATTACHMENT_LIMIT;
}

export function interactionTarget(
  where: { channelId: string; guildId: string | null },
  h: Omit<InteractionHandle, 'kind'>,
): ReplyTarget {
  return {
    platform: 'discord',
    chatId: where.channelId,
    ...(where.guildId ? { guildId: where.guildId } : {}),
    handle: { kind: 'interaction', ...h },
  };
}

export function channelTarget(where: { channelId: string; guildId: string | null }, h: Omit<ChannelHandle, 'kind'>): ReplyTarget {
  return {
    platform: 'discord',
    chatId: where.channelId,
    ...(where.guildId ? { guildId: where.guildId } : {}),
    handle: { kind: 'channel', ...h },
  };
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Reads a stored handle defensively: a job written by an older version must not crash delivery. */
export function readHandle(target: ReplyTarget, fallbackUserId: string): DiscordHandle {
  const h = target.handle;
  const userId = str(h.userId) ?? fallbackUserId;
  const applicationId = str(h.applicationId);
  const token = str(h.token);
  if (h.kind === 'interaction' && applicationId && token) {
    return {
      kind: 'interaction',
      interactionId: str(h.interactionId) ?? '',
      applicationId,
      token,
      createdAt: num(h.createdAt) ?? 0,
      userId,
      attachmentSizeLimit: num(h.attachmentSizeLimit) ?? DEFAULT_ATTACHMENT_LIMIT,
    };
  }
  return {
    kind: 'channel',
    userId,
    replyTo: str(h.replyTo) ?? null,
  };
}
