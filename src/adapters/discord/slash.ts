// Slash-command JSON drawn from the platform-neutral command list, so Discord's options and
// Telegram's menu never drift apart.
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  InteractionContextType,
  type APIApplicationCommandBasicOption,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import { commandDefinitions, type OptionDef } from '../../../commands/definitions.js';
import type { Config } from '../../config/schema.js';
import { clip } from '../text.js';

// Discord's own limits (developers/interactions/application-commands.mdx).
const MAX_DESCRIPTION = 100;
const MAX_CHOICES = 25;
const MAX_STRING_LENGTH = 6000;


function optionJson(def: OptionDef): APIApplicationCommandBasicOption {
  const base = { name: def.name, description: clip(def.description, MAX_DESCRIPTION), required: def.required ?? false };
  const choices = def.choices?.slice(0, MAX_CHOICES).map((c) => ({ name: clip(c.name, MAX_DESCRIPTION), value: c.value }));
  switch (def.type) {
    case 'string': {
      const maxLength = def.maxLength !== undefined ? { max_length: Math.min(def.maxLength, MAX_STRING_LENGTH) } : {};
      // Discord takes fixed choices or autocomplete, and rejects max_length together with choices.
      if (choices) return { ...base, type: ApplicationCommandOptionType.String, choices };
      if (def.autocomplete) return { ...base, type: ApplicationCommandOptionType.String, autocomplete: true, ...maxLength };
      return { ...base, type: ApplicationCommandOptionType.String, ...maxLength };
    }
    case 'integer':
      return {
        ...base,
        type: ApplicationCommandOptionType.Integer,
        ...(def.min !== undefined ? { min_value: def.min } : {}),
        ...(def.max !== undefined ? { max_value: def.max } : {}),
      };
    case 'number':
      return {
        ...base,
        type: ApplicationCommandOptionType.Number,
        ...(def.min !== undefined ? { min_value: def.min } : {}),
        ...(def.max !== undefined ? { max_value: def.max } : {}),
      };
    case 'boolean':
      return { ...base, type: ApplicationCommandOptionType.Boolean };
  }
}

/** The body for PUT /applications/:app/commands (or the guild variant). */
export function discordCommands(config: Config): RESTPostAPIChatInputApplicationCommandsJSONBody[] {
  const contexts = config.discord.allowDMs
    ? [InteractionContextType.Guild, InteractionContextType.BotDM]
    : [InteractionContextType.Guild];
  return commandDefinitions(config).map((def) => ({
    type: ApplicationCommandType.ChatInput,
    name: def.name,
    description: clip(def.description, MAX_DESCRIPTION),
    // Discord requires required options before optional ones.
    options: [...def.options].sort((a, b) => Number(b.required ?? false) - Number(a.required ?? false)).map(optionJson),
    contexts,
    integration_types: [ApplicationIntegrationType.GuildInstall],
  }));
}
