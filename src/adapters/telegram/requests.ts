// Reads what a Telegram message asks for. No business rules: only which command was meant
// and the text that goes with it; parsing, limits and permissions are decided in commands/.
import type { Message, MessageEntity } from 'grammy/types';
import type { CommandName } from '../../../commands/types.js';

export type MessageIntent =
  | { kind: 'command'; command: CommandName; text: string; via: 'slash' | 'text' }
  | { kind: 'unknown-command'; name: string }
  | { kind: 'ignore' };

/** Telegram command names (lowercase a-z0-9_) → our commands; /start is Telegram's "hello". */
const COMMANDS: Record<string, CommandName> = {
  imagine: 'imagine',
  settings: 'settings',
  queue: 'queue',
  cancel: 'cancel',
  help: 'help',
  start: 'help',
  web: 'web',
};

type TextMessage = Pick<Message, 'text' | 'entities' | 'caption' | 'caption_entities'> & { chat: Pick<Message['chat'], 'type'> };

export function readMessage(message: TextMessage, botUsername: string): MessageIntent {
  const text = message.text ?? message.caption;
  const entities = (message.text !== undefined ? message.entities : message.caption_entities) ?? [];
  if (text === undefined) return { kind: 'ignore' };
  const isPrivate = message.chat.type === 'private';
  const bot = botUsername.toLowerCase();

  const command = entities.find((e) => e.type === 'bot_command' && e.offset === 0);
  if (command) {
    const [rawName = '', addressee] = text.slice(1, command.length).split('@');
    // In groups several bots share the menu: `/imagine@otherbot` is not for us.
    if (addressee !== undefined && addressee.toLowerCase() !== bot) return { kind: 'ignore' };
    const name = rawName.toLowerCase();
    // Own properties only: `/constructor` is an unknown command, not Object's constructor.
    const mapped = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    const rest = text.slice(command.length).trim();
    if (mapped) return { kind: 'command', command: mapped, text: rest, via: 'slash' };
    if (isPrivate || addressee !== undefined) return { kind: 'unknown-command', name };
    return { kind: 'ignore' };
  }

  if (isPrivate) return { kind: 'command', command: 'imagine', text: text.trim(), via: 'text' };

  const mentions = entities.filter((e) => e.type === 'mention' && entityText(text, e).toLowerCase() === `@${bot}`);
  if (mentions.length === 0) return { kind: 'ignore' };
  return { kind: 'command', command: 'imagine', text: withoutEntities(text, mentions), via: 'text' };
}

function entityText(text: string, entity: MessageEntity): string {
  return text.slice(entity.offset, entity.offset + entity.length);
}

function withoutEntities(text: string, entities: MessageEntity[]): string {
  let out = text;
  for (const e of [...entities].sort((a, b) => b.offset - a.offset)) {
    out = out.slice(0, e.offset) + out.slice(e.offset + e.length);
  }
  // Keep line breaks: a pasted AUTOMATIC1111 info text is line-structured.
  return out.replace(/[ \t]{2,}/g, ' ').trim();
}
