// Where the bot answers on Discord: allowed guilds and channels (empty = all) and DMs, all
// from config. A thread counts as its parent channel.
import type { Config } from '../../config/schema.js';

export interface Place {
  guildId: string | null;
  channelId: string;
  /** The parent channel when the place is a thread. */
  parentId?: string | null;
}

/** undefined: allowed; otherwise the sentence to show the member. */
export function placeRefusal(config: Config, where: Place): string | undefined {
  const { allowedGuilds, allowedChannels, allowDMs } = config.discord;
  if (!where.guildId) {
    return allowDMs ? undefined : 'I only draw in the club’s server, not in direct messages.';
  }
  if (allowedGuilds.length > 0 && !allowedGuilds.includes(where.guildId)) {
    return 'I am not set up to draw in this server.';
  }
  if (allowedChannels.length > 0) {
    const here = [where.channelId, where.parentId].filter((c): c is string => typeof c === 'string');
    if (!here.some((c) => allowedChannels.includes(c))) {
      const list = allowedChannels.slice(0, 5).map((c) => `<#${c}>`).join(', ');
      return `I only draw in ${list}.`;
    }
  }
  return undefined;
}
