// The REST calls the adapter makes to draw messages. They go through client.rest with stored
// ids and tokens rather than through discord.js interaction objects, so a job queued before a
// restart is delivered the same way as one queued a second ago.
import { Routes, type APIMessage, type REST, type RawFile } from 'discord.js';
import type { ButtonRow } from './components.js';

export interface OutgoingFile {
  name: string;
  data: Buffer;
}

export interface OutgoingMessage {
  content?: string;
  components?: ButtonRow[];
  /** New files; when given, they replace the message's attachments. */
  files?: OutgoingFile[];
  /** Drop every attachment (e.g. a preview) without adding one. */
  clearAttachments?: boolean;
  /** Only these users may be pinged; a prompt saying @everyone pings nobody. */
  mentionUsers?: string[];
  /** Answer this message (channel messages only). */
  replyTo?: string;
  ephemeral?: boolean;
}

export interface MessageRef {
  channelId: string;
  messageId: string;
}

const EPHEMERAL = 1 << 6;

function body(msg: OutgoingMessage): Record<string, unknown> {
  const out: Record<string, unknown> = { allowed_mentions: { parse: [], users: msg.mentionUsers ?? [] } };
  if (msg.content !== undefined) out.content = msg.content;
  if (msg.components !== undefined) out.components = msg.components;
  if (msg.files && msg.files.length > 0) out.attachments = msg.files.map((f, i) => ({ id: i, filename: f.name }));
  else if (msg.clearAttachments) out.attachments = [];
  if (msg.ephemeral) out.flags = EPHEMERAL;
  if (msg.replyTo) out.message_reference = { message_id: msg.replyTo, fail_if_not_exists: false };
  return out;
}

function files(msg: OutgoingMessage): RawFile[] | undefined {
  return msg.files?.map((f) => ({ name: f.name, data: f.data }));
}

function ref(m: APIMessage): MessageRef {
  return { channelId: m.channel_id, messageId: m.id };
}

export class Outbox {
  constructor(private readonly rest: REST) {}

  /** Edit an interaction's first reply (the deferred "thinking…" message). */
  async editOriginal(appId: string, token: string, msg: OutgoingMessage): Promise<MessageRef> {
    const m = (await this.rest.patch(Routes.webhookMessage(appId, token, '@original'), {
      body: body(msg),
      files: files(msg),
      auth: false,
    })) as APIMessage;
    return ref(m);
  }

  async deleteOriginal(appId: string, token: string): Promise<void> {
    await this.rest.delete(Routes.webhookMessage(appId, token, '@original'), { auth: false });
  }

  async followUp(appId: string, token: string, msg: OutgoingMessage): Promise<MessageRef> {
    const m = (await this.rest.post(Routes.webhook(appId, token), { body: body(msg), files: files(msg), auth: false })) as APIMessage;
    return ref(m);
  }

  async send(channelId: string, msg: OutgoingMessage): Promise<MessageRef> {
    const m = (await this.rest.post(Routes.channelMessages(channelId), { body: body(msg), files: files(msg) })) as APIMessage;
    return ref(m);
  }

  /** A direct message: the last way to tell a member something when the channel refuses the bot. */
  async dm(userId: string, msg: OutgoingMessage): Promise<MessageRef> {
    const channel = (await this.rest.post(Routes.userChannels(), { body: { recipient_id: userId } })) as { id: string };
    return this.send(channel.id, msg);
  }

  async edit(channelId: string, messageId: string, msg: OutgoingMessage): Promise<MessageRef> {
    const m = (await this.rest.patch(Routes.channelMessage(channelId, messageId), { body: body(msg), files: files(msg) })) as APIMessage;
    return ref(m);
  }

  async delete(channelId: string, messageId: string): Promise<void> {
    await this.rest.delete(Routes.channelMessage(channelId, messageId));
  }

  async fetch(channelId: string, messageId: string): Promise<APIMessage> {
    return (await this.rest.get(Routes.channelMessage(channelId, messageId))) as APIMessage;
  }
}
