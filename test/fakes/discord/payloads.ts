// Wire shapes the fake Discord sends. Field lists follow what discord.js v14 reads when it
// builds its structures (BaseInteraction, Message, Guild); see shared/notes/platforms.md §1a.

const DISCORD_EPOCH = 1_420_070_400_000n;
let increment = 0n;

/**
 * A snowflake carrying a real timestamp, so `interaction.createdTimestamp` means something
 * (the adapter reads it to know when a token dies). 18–19 digits for current dates, which is
 * what @discordjs/rest's rate-limit routing expects.
 */
export function snowflake(at: number = Date.now()): string {
  increment = (increment + 1n) & 0xfffn;
  return (((BigInt(at) - DISCORD_EPOCH) << 22n) | (1n << 17n) | increment).toString();
}

export interface FakeUser {
  id: string;
  username: string;
  bot?: boolean;
}

export interface FakeIds {
  appId: string;
  botUser: FakeUser;
  guildId: string;
  channelId: string;
  /** Role ids the guild knows about (discord.js drops member roles that the guild does not list). */
  roles: string[];
}

export function userJson(user: FakeUser) {
  return {
    id: user.id,
    username: user.username,
    discriminator: '0',
    global_name: user.username,
    avatar: null,
    bot: user.bot ?? false,
  };
}

export function memberJson(user: FakeUser, roles: string[], permissions = '2147483647') {
  return {
    user: userJson(user),
    roles,
    joined_at: '2024-01-01T00:00:00.000Z',
    deaf: false,
    mute: false,
    flags: 0,
    nick: null,
    avatar: null,
    premium_since: null,
    pending: false,
    permissions,
  };
}

/** Everything but Administrator (which would make every channel overwrite meaningless). */
export const EVERYONE_PERMISSIONS = (2251799813685247n & ~(1n << 3n)).toString();

export interface Overwrite {
  id: string;
  /** 0 role, 1 member. */
  type: 0 | 1;
  allow: string;
  deny: string;
}

export function channelJson(ids: FakeIds, channelId = ids.channelId, overwrites: Overwrite[] = []) {
  return { id: channelId, type: 0, guild_id: ids.guildId, name: `chan-${channelId.slice(-4)}`, position: 0, permission_overwrites: overwrites, nsfw: false };
}

export function readyJson(ids: FakeIds, sessionId: string, resumeUrl: string) {
  return {
    v: 10,
    user: { ...userJson(ids.botUser), bot: true },
    guilds: [{ id: ids.guildId, unavailable: true }],
    session_id: sessionId,
    resume_gateway_url: resumeUrl,
    application: { id: ids.appId, flags: 0 },
    private_channels: [],
  };
}

export function guildCreateJson(
  ids: FakeIds,
  channels: { id: string; overwrites: Overwrite[] }[],
  premiumTier = 0,
) {
  const role = (id: string, name: string) => ({
    id,
    name,
    permissions: id === ids.guildId ? EVERYONE_PERMISSIONS : '0',
    position: 0,
    color: 0,
    hoist: false,
    managed: false,
    mentionable: false,
    flags: 0,
  });
  return {
    id: ids.guildId,
    name: 'fake guild',
    icon: null,
    owner_id: '444444444444444444',
    roles: [role(ids.guildId, '@everyone'), ...ids.roles.map((r) => role(r, `role-${r.slice(-4)}`))],
    emojis: [],
    stickers: [],
    features: [],
    members: [memberJson({ ...ids.botUser, bot: true }, [])],
    channels: channels.map((c) => channelJson(ids, c.id, c.overwrites)),
    threads: [],
    presences: [],
    voice_states: [],
    stage_instances: [],
    guild_scheduled_events: [],
    soundboard_sounds: [],
    joined_at: '2024-01-01T00:00:00.000Z',
    large: false,
    unavailable: false,
    member_count: 2,
    premium_tier: premiumTier,
    preferred_locale: 'en-US',
  };
}

export interface StoredAttachment {
  id: string;
  filename: string;
  contentType: string;
  data: Buffer;
}

/** A message as the fake keeps it; `json()` renders what the API returns. */
export interface StoredMessage {
  id: string;
  channelId: string;
  content: string;
  components: unknown[];
  attachments: StoredAttachment[];
  flags: number;
  /** 20 for interaction replies, 0 for channel messages, 19 for replies. */
  type: number;
  webhookId?: string;
  /** The interaction token whose @original this is. */
  interactionToken?: string;
  mentions: string[];
  deleted: boolean;
  editCount: number;
}

export function messageJson(ids: FakeIds, m: StoredMessage) {
  return {
    id: m.id,
    channel_id: m.channelId,
    guild_id: ids.guildId,
    author: { ...userJson(ids.botUser), bot: true },
    content: m.content,
    timestamp: new Date().toISOString(),
    edited_timestamp: m.editCount > 0 ? new Date().toISOString() : null,
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: m.attachments.map((a) => ({
      id: a.id,
      filename: a.filename,
      size: a.data.length,
      url: `https://cdn.invalid/attachments/${m.channelId}/${a.id}/${a.filename}`,
      proxy_url: `https://media.invalid/attachments/${m.channelId}/${a.id}/${a.filename}`,
      content_type: a.contentType,
    })),
    embeds: [],
    pinned: false,
    type: m.type,
    flags: m.flags,
    components: m.components,
    ...(m.webhookId ? { webhook_id: m.webhookId, application_id: m.webhookId } : {}),
  };
}
