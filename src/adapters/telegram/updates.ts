// Telegram updates → CommandRequests, and CommandReplies → Telegram messages. Messages,
// button presses and 🔁 reactions each become one request; what is allowed and how text is
// read is decided in commands/.
import { InputFile, type Api, type Context } from 'grammy';
import type { Chat, Message, MessageReactionUpdated, User } from 'grammy/types';
import type { Logger } from 'pino';
import { decodeAction } from '../../../commands/codec.js';
import { runCommand } from '../../../commands/index.js';
import { commandForAction, startsJob } from '../../../commands/routing.js';
import type { Action, CommandContext, CommandName, CommandReply, CommandRequest } from '../../../commands/types.js';
import type { Config } from '../../config/schema.js';
import type { Job, JobService, Requester } from '../../jobs/types.js';
import type { ResultNotes } from './deliver.js';
import { classifyFailure, describeFailure } from './errors.js';
import { makeTarget, replyOptions } from './handle.js';
import { htmlPieces } from './html.js';
import { inlineKeyboard } from './keyboard.js';
import { readMessage } from './requests.js';
import type { StatusBoard } from './status.js';
import { CAPTION_LIMIT, clip, MESSAGE_LIMIT, splitMessage } from './text.js';

export const PLACEHOLDER_TEXT = '⏳ One moment…';
const OOPS = 'Sorry, something went wrong on our side. Please try again in a minute.';
const EXPIRED_BUTTON = 'This button is no longer valid. Use the buttons on a newer result.';


/** Commands whose argument text is also their single slash option (see commands/definitions.ts). */
const TEXT_OPTION: Partial<Record<CommandName, string>> = { cancel: 'job', settings: 'change' };

/** Status messages already sent for an update, kept in the inbox so handling it again after a kill reuses them. */
export interface PlaceholderMemory {
  placeholderOf(updateId: number): number | undefined;
  rememberPlaceholder(updateId: number, messageId: number): Promise<void>;
}

export interface UpdateDeps {
  api: Api;
  config: Config;
  jobs: JobService;
  commands: CommandContext;
  log: Logger;
  board: StatusBoard;
  botUsername: () => string;
  placeholders?: PlaceholderMemory;
  /** Ids of a result's follow-up messages (see deliver.ts). */
  notes?: Pick<ResultNotes, 'getNote'>;
}

/** Where answers to one request go. */
interface Place {
  chatId: number;
  chatType: Chat['type'];
  /** The message answers reply to: the member's message, or the result a button was pressed on. */
  replyTo: number | null;
  threadId: number | null;
}

export class UpdateHandlers {
  constructor(private readonly deps: UpdateDeps) {}

  async onMessage(ctx: Context & { message: Message }): Promise<void> {
    const message = ctx.message;
    const from = message.from;
    // Other bots and anonymous admins (sent as a bot) are not members; channel posts never get here.
    if (!from || from.is_bot) return;
    const intent = readMessage(message, this.deps.botUsername());
    if (intent.kind === 'ignore') return;
    const place: Place = {
      chatId: message.chat.id,
      chatType: message.chat.type,
      replyTo: message.message_id,
      threadId: message.is_topic_message && message.message_thread_id !== undefined ? message.message_thread_id : null,
    };
    const refusal = this.refusal(message.chat.id, from.id);
    if (refusal) return void (await this.sendText(place, refusal));
    if (intent.kind === 'unknown-command') {
      return void (await this.sendText(place, `I don't know /${intent.name}. Send /help to see what I can do.`));
    }
    const option = TEXT_OPTION[intent.command];
    const request: Omit<CommandRequest, 'target'> = {
      command: intent.command,
      requester: requesterOf(from),
      via: intent.via,
      text: intent.text,
      ...(option && intent.text ? { options: { [option]: intent.text } } : {}),
      idempotencyKey: `tg:${message.chat.id}:${message.message_id}`,
    };
    await this.handle(place, request, ctx.update.update_id);
  }

  async onCallback(ctx: Context): Promise<void> {
    const query = ctx.callbackQuery;
    if (!query) return;
    const chat = query.message?.chat;
    const action = query.data !== undefined ? decodeAction(query.data) : undefined;
    // Callback data is untrusted input: anything we did not encode gets a short alert, nothing else.
    if (!action || !chat || chat.type === 'channel') return void (await this.answer(ctx, EXPIRED_BUTTON));
    const refusal = this.refusal(chat.id, query.from.id);
    if (refusal) return void (await this.answer(ctx, refusal));
    // Telegram shows a spinner on the button until the query is answered: answer first, then act.
    await this.answer(ctx);
    const message = query.message;
    const place: Place = {
      chatId: chat.id,
      chatType: chat.type,
      replyTo: message && message.date !== 0 ? message.message_id : null,
      threadId: message && 'is_topic_message' in message && message.is_topic_message ? (message.message_thread_id ?? null) : null,
    };
    await this.handle(place, this.actionRequest(action, query.from, 'button', `tg:cb:${query.id}`), ctx.update.update_id);
  }

  async onReaction(ctx: Context): Promise<void> {
    const update: MessageReactionUpdated | undefined = ctx.messageReaction;
    const user = update?.user;
    if (!update || !user || user.is_bot || update.chat.type === 'channel') return;
    const before = new Set(update.old_reaction.flatMap((r) => (r.type === 'emoji' ? [r.emoji as string] : [])));
    const added = update.new_reaction.flatMap((r) => (r.type === 'emoji' && !before.has(r.emoji) ? [r.emoji as string] : []));
    if (!added.some((emoji) => this.deps.config.telegram.rerollReactions.includes(emoji))) return;
    // Reactions are easy to add by accident: outside the allowed chats they are ignored silently.
    if (this.refusal(update.chat.id, user.id)) return;
    const job = await this.deps.jobs.findByMessage('telegram', String(update.chat.id), String(update.message_id));
    if (!job) return;
    const place: Place = { chatId: update.chat.id, chatType: update.chat.type, replyTo: update.message_id, threadId: null };
    // Keyed by the update: Telegram re-sends an unconfirmed update with the same id (queued once),
    // while the member removing and adding 🔁 again is a new update and a new reroll.
    const key = `tg:re:${update.chat.id}:${update.message_id}:${user.id}:${ctx.update.update_id}`;
    await this.handle(place, this.actionRequest({ action: 'reroll', jobId: job.id }, user, 'reaction', key), ctx.update.update_id);
  }

  private actionRequest(action: Action, from: User, via: 'button' | 'reaction', idempotencyKey: string): Omit<CommandRequest, 'target'> {
    return { command: commandForAction(action.action), requester: requesterOf(from), via, action, idempotencyKey };
  }

  /** Runs one request and draws its reply. Requests that start a job get their status message first. */
  private async handle(place: Place, request: Omit<CommandRequest, 'target'>, updateId: number): Promise<void> {
    const startsAJob = startsJob(request.command);
    let placeholder: number | null = null;
    if (startsAJob) {
      // Sent before the command runs so its id is stored with the job: the status message can
      // then be edited and removed even after a restart. An update handled again after a kill
      // reuses the one it already has, so no "One moment…" is left behind.
      placeholder = this.deps.placeholders?.placeholderOf(updateId) ?? null;
      if (placeholder === null) {
        try {
          placeholder = (await this.deps.api.sendMessage(place.chatId, PLACEHOLDER_TEXT, replyOptions(place.replyTo, place.threadId))).message_id;
        } catch (err) {
          this.deps.log.warn(describeFailure(err), 'telegram: could not send a status message');
          if (classifyFailure(err) === 'unreachable') return;
        }
        if (placeholder !== null) {
          await this.deps.placeholders
            ?.rememberPlaceholder(updateId, placeholder)
            .then(() => this.deps.log.debug({ updateId, messageId: placeholder }, 'telegram: status message id kept'))
            .catch((err: unknown) => this.deps.log.warn({ err }, 'telegram: status message id not kept in the inbox'));
        }
      }
    }
    const target = makeTarget(place.chatId, { chatType: place.chatType, replyTo: place.replyTo, statusMessageId: placeholder, threadId: place.threadId });
    const reply = await this.run({ ...request, target });
    await this.draw(place, reply, placeholder);
  }

  private async run(request: CommandRequest): Promise<CommandReply> {
    try {
      return await runCommand(request, this.deps.commands);
    } catch (err) {
      this.deps.log.error({ err, command: request.command }, 'telegram: command failed');
      return { ok: false, visibility: 'private', text: OOPS };
    }
  }

  private async draw(place: Place, reply: CommandReply, placeholder: number | null): Promise<void> {
    const { api, board, log } = this.deps;
    if (reply.deleteJob) await this.deleteResult(reply.deleteJob);

    const files = reply.files ?? [];
    for (const [i, file] of files.entries()) {
      // A lone file with nothing queued carries the reply as its caption.
      const caption = i === 0 && !reply.queued ? clip(reply.text, CAPTION_LIMIT) : undefined;
      try {
        await api.sendDocument(place.chatId, new InputFile(file.path, file.name), {
          ...(caption ? { caption } : {}),
          ...replyOptions(place.replyTo, place.threadId),
        });
      } catch (err) {
        log.warn(describeFailure(err), 'telegram: could not send a file');
      }
    }

    if (reply.queued) {
      const { job } = reply.queued;
      const ownStatus = job.target.platform === 'telegram' && job.target.handle.statusMessageId === placeholder;
      if (!ownStatus && placeholder !== null) {
        // A re-delivered update found its job already queued: that job has its own status message.
        await api.deleteMessage(place.chatId, placeholder).catch(() => undefined);
        return;
      }
      board.show(job, reply.text, { ifNew: true });
      return;
    }

    const text = files.length > 0 || (reply.deleteJob && reply.ok) ? '' : reply.text;
    const keyboard = inlineKeyboard(reply.buttons);
    if (text && reply.parts?.some((p) => p.code)) return this.drawHtml(place, htmlPieces(reply.parts), placeholder, keyboard);
    if (placeholder !== null) {
      if (text) {
        await api
          .editMessageText(place.chatId, placeholder, clip(text, MESSAGE_LIMIT), keyboard ? { reply_markup: keyboard } : {})
          .catch((err: unknown) => log.debug(describeFailure(err), 'telegram: placeholder edit failed'));
      } else await api.deleteMessage(place.chatId, placeholder).catch(() => undefined);
      return;
    }
    if (text) await this.sendText(place, text, keyboard);
  }

  /** A reply with copy-paste parts: HTML pieces (code in <pre>), the first one in the placeholder if there is one. */
  private async drawHtml(place: Place, pieces: string[], placeholder: number | null, keyboard: ReturnType<typeof inlineKeyboard>): Promise<void> {
    const { api, log } = this.deps;
    for (const [i, piece] of pieces.entries()) {
      const markup = i === pieces.length - 1 && keyboard ? { reply_markup: keyboard } : {};
      try {
        if (i === 0 && placeholder !== null) {
          await api.editMessageText(place.chatId, placeholder, piece, { parse_mode: 'HTML', ...markup });
        } else {
          await api.sendMessage(place.chatId, piece, {
            parse_mode: 'HTML',
            ...replyOptions(i === 0 ? place.replyTo : null, place.threadId),
            ...markup,
          });
        }
      } catch (err) {
        log.warn(describeFailure(err), 'telegram: could not send a reply');
        return;
      }
    }
  }

  /** Removes a delivered result (the photo and its details messages). */
  private async deleteResult(job: Job): Promise<void> {
    const ref = job.delivery?.ref;
    if (!ref?.chatId || !ref.messageId) return;
    // Results delivered before the notes existed carry their detail ids in the ref.
    const details = (await this.deps.notes?.getNote(job.id).catch(() => undefined)) ?? (ref.detailMessageIds ? ref.detailMessageIds.split(',') : []);
    const ids = [ref.messageId, ...details];
    for (const id of ids) {
      await this.deps.api
        .deleteMessage(Number(ref.chatId), Number(id))
        .catch((err: unknown) => this.deps.log.debug(describeFailure(err), 'telegram: could not delete a result message'));
    }
  }

  private async sendText(place: Place, text: string, keyboard?: ReturnType<typeof inlineKeyboard>): Promise<void> {
    const pieces = splitMessage(text);
    for (const [i, piece] of pieces.entries()) {
      const last = i === pieces.length - 1;
      try {
        await this.deps.api.sendMessage(place.chatId, piece, {
          ...replyOptions(i === 0 ? place.replyTo : null, place.threadId),
          ...(last && keyboard ? { reply_markup: keyboard } : {}),
        });
      } catch (err) {
        this.deps.log.warn(describeFailure(err), 'telegram: could not send a reply');
        return;
      }
    }
  }

  private async answer(ctx: Context, alert?: string): Promise<void> {
    try {
      await ctx.answerCallbackQuery(alert ? { text: clip(alert, 200), show_alert: true } : undefined);
    } catch (err) {
      // Too late or answered already (a re-delivered update): the press still counts.
      this.deps.log.debug(describeFailure(err), 'telegram: answerCallbackQuery failed');
    }
  }

  /** The allowlists from config: empty means everyone. */
  private refusal(chatId: number, userId: number): string | undefined {
    const { allowedChats, allowedUsers } = this.deps.config.telegram;
    if (allowedChats.length > 0 && !allowedChats.includes(String(chatId))) {
      return 'Sorry, this bot is not open in this chat. Ask the club admins to add it.';
    }
    if (allowedUsers.length > 0 && !allowedUsers.includes(String(userId))) {
      return 'Sorry, this bot is only open to club members on its list. Ask the club admins to add you.';
    }
    return undefined;
  }
}

function requesterOf(from: User): Requester {
  const name = from.username ? `@${from.username}` : [from.first_name, from.last_name].filter(Boolean).join(' ');
  return { platform: 'telegram', userId: String(from.id), name: name || String(from.id), roles: [] };
}
