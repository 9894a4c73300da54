// Slash commands and button presses → CommandRequest → runCommand → Discord replies. Whether
// the answer is public or private is known before the acknowledgement goes out: the command
// runs first (its checks and the job record take milliseconds) and the deferral follows with
// the right visibility, so a refusal never flashes a public "thinking…". Only a command slower
// than the acknowledgement budget is deferred before its answer is known.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import {
  MessageFlags,
  PermissionFlagsBits,
  type ButtonInteraction,
  type AutocompleteInteraction,
  type ChatInputCommandInteraction,
  type GuildMember,
  type Interaction,
} from 'discord.js';
import type { Logger } from 'pino';
import { decodeAction } from '../../../commands/codec.js';
import { runCommand } from '../../../commands/index.js';
import { commandForAction, startsJob } from '../../../commands/routing.js';
import { suggest } from '../../../commands/suggest.js';
import type { CommandContext, CommandName, CommandReply, CommandRequest } from '../../../commands/types.js';
import type { Config } from '../../config/schema.js';
import type { Requester } from '../../jobs/types.js';
import { encodeForDelivery } from '../../render/index.js';
import { RecentKeys } from '../recent-keys.js';
import { buttonRows } from './components.js';
import { describeFailure, type DiscordFailure } from './errors.js';
import type { JobFollower } from './follow.js';
import { MAX_CONTENT } from './follow.js';
import type { Outbox, OutgoingFile, OutgoingMessage } from './outbox.js';
import { clip } from '../text.js';
import { renderParts } from './markdown.js';
import { placeRefusal } from './places.js';
import { interactionTarget } from './target.js';

export const STALE_BUTTON = 'This button is no longer valid.';
const NEED_ATTACH = 'I need the “Attach Files” permission in this channel to post pictures; please ask a moderator.';
const SLASH_COMMANDS = new Set<CommandName>(['imagine', 'settings', 'queue', 'cancel', 'help', 'web']);
/** Long private answers (info with a long prompt) go out in at most this many messages. */
const MAX_PARTS = 3;
/**
 * How long a command may run before the interaction is acknowledged anyway. Discord allows 3 s
 * from the interaction's creation; the event took some of that to arrive.
 */
export const ACK_BUDGET_MS = 1_500;
/** What a public deferral becomes when the answer turned out private (sent as a follow-up). */
export const NOT_STARTED_NOTE = 'This request was not started; I sent you the reason privately.';

/** Discord's limits on autocomplete answers: 25 choices, names of at most 100 characters. */
const MAX_SUGGESTIONS = 25;
const MAX_SUGGESTION_NAME = 100;

export interface InteractionDeps {
  config: Config;
  commands: CommandContext;
  follower: JobFollower;
  outbox: Outbox;
  log: Logger;
}

/** Splits text into Discord-sized messages, at line breaks where possible. */
export function splitContent(text: string, max = MAX_CONTENT): string[] {
  const parts: string[] = [];
  let rest = text;
  while (rest.length > max) {
    const cut = rest.lastIndexOf('\n', max);
    const at = cut > max / 2 ? cut : max;
    parts.push(rest.slice(0, at));
    rest = rest.slice(at).replace(/^\n/, '');
  }
  if (rest.length > 0 || parts.length === 0) parts.push(rest);
  return parts;
}

function requesterOf(i: ChatInputCommandInteraction | ButtonInteraction): Requester {
  const member = i.member;
  let roles: string[] = [];
  let name = i.user.displayName;
  if (member) {
    if (Array.isArray(member.roles)) {
      roles = member.roles;
      const nick = (member as { nick?: string | null }).nick;
      name = nick ?? name;
    } else {
      const m = member as GuildMember;
      roles = [...m.roles.cache.keys()].filter((id) => id !== i.guildId);
      name = m.displayName;
    }
  }
  return { platform: 'discord', userId: i.user.id, name, roles };
}

export class InteractionHandler {
  readonly #deps: InteractionDeps;
  readonly #seen = new RecentKeys(5_000);
  #stopped = false;

  constructor(deps: InteractionDeps) {
    this.#deps = deps;
  }

  stop(): void {
    this.#stopped = true;
  }

  /** The client's interactionCreate listener; never throws. */
  readonly onInteraction = (i: Interaction): void => {
    if (this.#stopped) return;
    if (i.isAutocomplete()) {
      this.#autocomplete(i).catch((err: unknown) => this.#deps.log.warn({ failure: describeFailure(err), interactionId: i.id }, 'autocomplete not answered'));
      return;
    }
    if (!i.isChatInputCommand() && !i.isButton()) return;
    // A gateway replay hands us the same interaction again; it was answered the first time.
    if (this.#seen.has(i.id)) return;
    this.#seen.add(i.id);
    const work = i.isChatInputCommand() ? this.#slash(i) : this.#button(i);
    work.catch((err: unknown) => this.#deps.log.error({ failure: describeFailure(err), interactionId: i.id }, 'interaction handling failed'));
  };

  /** Suggestions while a member types an option (the model list, with what each model is). */
  async #autocomplete(i: AutocompleteInteraction): Promise<void> {
    const focused = i.options.getFocused(true);
    const found = suggest(focused.name, String(focused.value), this.#deps.commands, MAX_SUGGESTIONS);
    await i.respond(found.map((s) => ({ name: clip(s.label, MAX_SUGGESTION_NAME), value: s.value })));
  }

  async #slash(i: ChatInputCommandInteraction): Promise<void> {
    const command = i.commandName as CommandName;
    const refusal =
      this.#refusal(i) ??
      (SLASH_COMMANDS.has(command) ? undefined : `Unknown command /${i.commandName}. Try /help.`) ??
      (this.#cannotAttach(i, command) ? NEED_ATTACH : undefined);
    if (refusal) return this.#refuseAtOnce(i, refusal);
    const options: Record<string, string | number | boolean> = {};
    for (const o of i.options.data) {
      if (o.value !== undefined && o.value !== null) options[o.name] = o.value;
    }
    // The prompt is free text: inline --flags in it are read by the one parser.
    const { prompt, ...rest } = options;
    const req: CommandRequest = {
      command,
      requester: requesterOf(i),
      target: this.#target(i),
      via: 'slash',
      ...(command === 'imagine' && typeof prompt === 'string' ? { text: prompt, options: rest } : { options }),
      idempotencyKey: `discord:${i.id}`,
    };
    await this.#run(i, startsJob(command), req);
  }

  async #button(i: ButtonInteraction): Promise<void> {
    const action = decodeAction(i.customId);
    if (!action) return this.#refuseAtOnce(i, STALE_BUTTON);
    const command = commandForAction(action.action);
    const refusal = this.#refusal(i) ?? (this.#cannotAttach(i, command) ? NEED_ATTACH : undefined);
    if (refusal) return this.#refuseAtOnce(i, refusal);
    const req: CommandRequest = {
      command,
      requester: requesterOf(i),
      target: this.#target(i),
      via: 'button',
      action,
      idempotencyKey: `discord:${i.id}`,
    };
    await this.#run(i, startsJob(command), req);
  }

  #refusal(i: ChatInputCommandInteraction | ButtonInteraction): string | undefined {
    const channel = i.channel;
    const parentId = channel && 'parentId' in channel && channel.isThread() ? channel.parentId : null;
    return placeRefusal(this.#deps.config, { guildId: i.guildId, channelId: i.channelId, parentId });
  }

  /** A job whose picture could not be posted here would fail only at delivery (50013). */
  #cannotAttach(i: ChatInputCommandInteraction | ButtonInteraction, command: CommandName): boolean {
    return startsJob(command) && i.inGuild() && !i.appPermissions.has(PermissionFlagsBits.AttachFiles);
  }

  #target(i: ChatInputCommandInteraction | ButtonInteraction) {
    return interactionTarget(
      { channelId: i.channelId, guildId: i.guildId },
      {
        interactionId: i.id,
        applicationId: i.applicationId,
        token: i.token,
        createdAt: i.createdTimestamp,
        userId: i.user.id,
        attachmentSizeLimit: i.attachmentSizeLimit,
      },
    );
  }

  /** The 3-second acknowledgement. false: Discord refused it (a replay, or too late). */
  async #defer(i: ChatInputCommandInteraction | ButtonInteraction, isPublic: boolean): Promise<boolean> {
    try {
      await i.deferReply(isPublic ? {} : { flags: MessageFlags.Ephemeral });
      return true;
    } catch (err) {
      this.#deps.log.warn({ failure: describeFailure(err), interactionId: i.id }, 'could not acknowledge an interaction');
      return false;
    }
  }

  async #refuseAtOnce(i: ChatInputCommandInteraction | ButtonInteraction, text: string): Promise<void> {
    try {
      await i.reply({ content: text, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    } catch (err) {
      this.#deps.log.warn({ failure: describeFailure(err), interactionId: i.id }, 'could not answer an interaction');
    }
  }

  /**
   * Runs the command, then acknowledges with the visibility its answer needs. When the command
   * is slower than the budget, the acknowledgement goes first with the likely visibility
   * (public for commands that start jobs).
   */
  async #run(i: ChatInputCommandInteraction | ButtonInteraction, likelyPublic: boolean, req: CommandRequest): Promise<void> {
    const acknowledged = this.#deps.follower.acknowledging(i.token);
    const running = runCommand(req, this.#deps.commands);
    let timer: NodeJS.Timeout | undefined;
    const early = await Promise.race([
      running,
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ACK_BUDGET_MS))),
    ]);
    clearTimeout(timer);
    const isPublic = early ? early.ok && early.visibility === 'public' : likelyPublic;
    const acked = await this.#defer(i, isPublic);
    acknowledged(acked);
    const reply = early ?? (await running);
    if (!acked) {
      // Too late for Discord: a job it queued still reaches the member, through the channel.
      if (reply.queued) void this.#deps.follower.follow(reply.queued.job, reply.text);
      return;
    }
    await this.#answer(i, isPublic, reply);
  }

  /** Draws a CommandReply into the deferred reply (or privately, when it must be private). */
  async #answer(i: ChatInputCommandInteraction | ButtonInteraction, deferredPublic: boolean, reply: CommandReply): Promise<void> {
    const { outbox, follower, log } = this.#deps;
    const app = i.applicationId;
    const token = i.token;
    try {
      const deleteNote = reply.deleteJob ? await this.#deleteResult(reply.deleteJob.delivery?.ref, i) : undefined;
      const text = deleteNote ?? reply.text;
      const isPrivate = !reply.ok || reply.visibility === 'private';
      const messages = !deleteNote && reply.parts ? renderParts(reply.parts) : splitContent(text);
      if (isPrivate && deferredPublic) {
        // Only after a slow command: the public "thinking…" cannot turn private. It gets a short
        // neutral note first — a follow-up sent while it still loads would take its place, in
        // public — and the answer follows privately.
        const noted = await outbox.editOriginal(app, token, { content: NOT_STARTED_NOTE, components: [] }).then(
          () => true,
          (err: unknown) => {
            log.warn({ failure: describeFailure(err), interactionId: i.id }, 'could not settle a public deferral');
            return false;
          },
        );
        if (!noted) return;
        for (const part of messages.slice(0, MAX_PARTS)) await outbox.followUp(app, token, { content: part, ephemeral: true });
        return;
      }
      const files = reply.files ? await this.#files(reply.files, i.attachmentSizeLimit) : [];
      if (reply.queued) {
        // The deferred reply becomes the job's status message. Pictures sent with it go below,
        // once it shows the status: sent earlier, the follow-up would become the reply itself.
        const shown = follower.follow(reply.queued.job, text);
        if (files.length > 0) {
          if (await shown) await outbox.followUp(app, token, { content: clip(text, MAX_CONTENT), files });
          else log.warn({ interactionId: i.id, jobId: reply.queued.job.id }, 'status never shown; the picture was not sent ahead');
        }
        return;
      }
      const [first = '', ...more] = messages;
      const msg: OutgoingMessage = { content: first, components: buttonRows(reply.buttons), ...(files.length ? { files } : {}) };
      await outbox.editOriginal(app, token, msg);
      for (const part of more.slice(0, MAX_PARTS - 1)) await outbox.followUp(app, token, { content: part, ephemeral: isPrivate });
    } catch (err) {
      log.warn({ failure: describeFailure(err), interactionId: i.id, command: i.isButton() ? 'button' : i.commandName }, 'could not answer');
    }
  }

  /** 🗑: removes the result message; returns a note when it could not. */
  async #deleteResult(ref: Record<string, string> | undefined, i: ChatInputCommandInteraction | ButtonInteraction): Promise<string | undefined> {
    const channelId = ref?.chatId ?? (i.isButton() ? i.message.channelId : undefined);
    const messageId = ref?.messageId ?? (i.isButton() ? i.message.id : undefined);
    if (!channelId || !messageId) return 'That result has no message I could find to delete.';
    try {
      await this.#deps.outbox.delete(channelId, messageId);
      return undefined;
    } catch (err) {
      const f: DiscordFailure = describeFailure(err);
      if (f.code === 10008) return undefined; // already gone
      this.#deps.log.warn({ failure: f }, 'could not delete a result message');
      return f.code === 50013 ? 'I may not delete that message here (missing permission).' : 'I could not delete that message; try again later.';
    }
  }

  async #files(files: NonNullable<CommandReply['files']>, byteLimit: number): Promise<OutgoingFile[]> {
    const out: OutgoingFile[] = [];
    for (const f of files) {
      const png = await readFile(f.path);
      const fitted = await encodeForDelivery(png, byteLimit);
      const base = path.basename(f.name, path.extname(f.name));
      out.push({ name: `${base}.${fitted.ext}`, data: fitted.data });
    }
    return out;
  }
}

