// The status message of each job ("queued #3 · about 40 s", "drawing… step 5/20"), edited as
// the job moves. Telegram limits edits (about 20 messages a minute in a group), so edits are
// paced per message and coalesce to the latest state; the "sending a photo" chat action runs
// while the engine draws.
import type { Api } from 'grammy';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import type { Job } from '../../jobs/types.js';
import { RecentKeys } from '../recent-keys.js';
import { classifyFailure, describeFailure } from './errors.js';
import { readHandle, replyOptions } from './handle.js';
import { clip, MESSAGE_LIMIT } from './text.js';

/** Telegram shows a chat action for about 5 s; renew it a little before it fades. */
export const CHAT_ACTION_EVERY_MS = 4_000;

interface Entry {
  job: Job;
  chatId: number;
  messageId: number | null;
  intervalMs: number;
  shown: string;
  want: string;
  lastEditAt: number;
  timer?: NodeJS.Timeout;
  inflight: boolean;
  actionTimer?: NodeJS.Timeout;
  /** After its last edit the entry goes away (failed, cancelled). */
  final: boolean;
  /** Editing stopped: the member blocked the bot or the message is gone. */
  dead: boolean;
}

export interface StatusBoardDeps {
  api: Api;
  config: Config;
  log: Logger;
  now?: () => number;
}

export class StatusBoard {
  private readonly entries = new Map<string, Entry>();
  private readonly finished = new RecentKeys(2_000);
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly deps: StatusBoardDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** Shows `text` as the job's status (paced). `ifNew`: only if nothing is shown yet. */
  show(job: Job, text: string, options: { ifNew?: boolean } = {}): void {
    if (this.closed || this.finished.has(job.id)) return;
    const existing = this.entries.get(job.id);
    if (existing && options.ifNew) return;
    const entry = existing ?? this.create(job);
    entry.job = job;
    entry.want = clip(text, MESSAGE_LIMIT);
    this.kick(entry);
  }

  /** The job is running: keep the "sending a photo" action up until it ends. */
  drawing(job: Job): void {
    if (this.closed || this.finished.has(job.id)) return;
    const entry = this.entries.get(job.id) ?? this.create(job);
    if (entry.actionTimer || entry.dead) return;
    const send = () => {
      const { threadId } = readHandle(entry.job);
      this.deps.api
        .sendChatAction(entry.chatId, 'upload_photo', threadId !== null ? { message_thread_id: threadId } : {})
        .catch((err: unknown) => {
          if (classifyFailure(err) === 'unreachable') this.stopAction(entry);
          this.deps.log.debug({ jobId: job.id, ...describeFailure(err) }, 'telegram: chat action failed');
        });
    };
    send();
    entry.actionTimer = setInterval(send, CHAT_ACTION_EVERY_MS);
    entry.actionTimer.unref();
  }

  /** Last words for a failed or cancelled job; the entry is dropped once they are shown. */
  settle(job: Job, text: string): void {
    const entry = this.entries.get(job.id) ?? (this.finished.has(job.id) ? undefined : this.create(job));
    if (!entry) return;
    this.stopAction(entry);
    entry.final = true;
    entry.job = job;
    entry.want = clip(text, MESSAGE_LIMIT);
    this.kick(entry);
  }

  /**
   * The job is done: stop pacing and the chat action, forget it, and return its status
   * message so delivery can remove it once the picture is up.
   */
  finish(job: Job): number | null {
    const entry = this.entries.get(job.id);
    this.finished.add(job.id);
    if (!entry) return readHandle(job).statusMessageId;
    this.drop(entry);
    return entry.messageId;
  }

  close(): void {
    this.closed = true;
    for (const entry of this.entries.values()) this.drop(entry);
  }

  private create(job: Job): Entry {
    const handle = readHandle(job);
    const { groupEditMs, privateEditMs } = this.deps.config.telegram;
    const entry: Entry = {
      job,
      chatId: handle.chatId,
      messageId: handle.statusMessageId,
      intervalMs: handle.chatType === 'private' ? privateEditMs : groupEditMs,
      shown: '',
      want: '',
      // The first change of the placeholder goes out at once; pacing starts from there.
      lastEditAt: 0,
      inflight: false,
      final: false,
      dead: false,
    };
    this.entries.set(job.id, entry);
    return entry;
  }

  private kick(entry: Entry): void {
    if (entry.inflight || entry.timer || entry.dead || this.closed) return;
    if (entry.want === entry.shown) {
      if (entry.final) this.finishEntry(entry);
      return;
    }
    // A status message that does not exist yet is sent at once; edits are paced.
    const wait = entry.messageId === null ? 0 : entry.lastEditAt + entry.intervalMs - this.now();
    if (wait > 0) {
      entry.timer = setTimeout(() => {
        entry.timer = undefined;
        void this.flush(entry);
      }, wait);
      entry.timer.unref();
      return;
    }
    void this.flush(entry);
  }

  private async flush(entry: Entry): Promise<void> {
    const text = entry.want;
    entry.inflight = true;
    try {
      if (entry.messageId === null) {
        const { replyTo, threadId } = readHandle(entry.job);
        const sent = await this.deps.api.sendMessage(entry.chatId, text, replyOptions(replyTo, threadId));
        entry.messageId = sent.message_id;
      } else {
        await this.deps.api.editMessageText(entry.chatId, entry.messageId, text);
      }
      entry.shown = text;
    } catch (err) {
      const kind = classifyFailure(err);
      if (kind === 'not-modified') entry.shown = text;
      else {
        if (kind === 'unreachable' || kind === 'message-gone') {
          entry.dead = true;
          this.stopAction(entry);
        }
        // A failed progress edit is cosmetic: the next state will try again.
        else entry.shown = text;
        this.deps.log.debug({ jobId: entry.job.id, ...describeFailure(err) }, 'telegram: status edit failed');
      }
    } finally {
      entry.inflight = false;
      entry.lastEditAt = this.now();
    }
    if (this.entries.get(entry.job.id) !== entry) return;
    if (entry.dead && entry.final) this.finishEntry(entry);
    else this.kick(entry);
  }

  private finishEntry(entry: Entry): void {
    this.drop(entry);
    this.finished.add(entry.job.id);
  }

  private stopAction(entry: Entry): void {
    if (entry.actionTimer) clearInterval(entry.actionTimer);
    entry.actionTimer = undefined;
  }

  private drop(entry: Entry): void {
    this.stopAction(entry);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    this.entries.delete(entry.job.id);
  }
}
