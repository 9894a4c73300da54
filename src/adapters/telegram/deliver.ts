// Puts a finished job's picture in the chat: the grid as a photo with a short caption and the
// action keyboard. The delivery is recorded the moment Telegram accepts the photo (with the
// message, so 🔁 reactions find it), before anything else, so a kill after that never sends the
// picture again; then the rest of the details as a follow-up message, and the status message goes.
import { readFile } from 'node:fs/promises';
import { GrammyError, InputFile, type Api } from 'grammy';
import type { Message } from 'grammy/types';
import type { Logger } from 'pino';
import { resultView } from '../../../commands/result.js';
import type { Config } from '../../config/schema.js';
import type { Job, JobService } from '../../jobs/types.js';
import { encodeForDelivery } from '../../render/index.js';
import { classifyFailure, describeFailure, unreachableReason } from './errors.js';
import { readHandle, replyOptions } from './handle.js';
import { inlineKeyboard } from './keyboard.js';
import { fitCaption, splitMessage } from './text.js';

/** sendPhoto: "at most 10 MB", "width and height must not exceed 10000 in total", "ratio at most 20". */
export const PHOTO_LIMITS = { bytes: 10_000_000, maxSideSum: 10_000, maxAspect: 20 } as const;
/** sendDocument: up to 50 MB through the public Bot API. */
export const DOCUMENT_BYTES = 50_000_000;
/** When a delivery fails for a reason that may pass (network, Telegram trouble): wait, then try again. */
const RETRY_DELAYS_MS = [15_000, 60_000, 300_000];
const DONE_TEXT = '✅ Done.';

/** Where the ids of a result's follow-up messages are kept (🗑 removes them with the photo). */
export interface ResultNotes {
  getNote(jobId: string): Promise<string[] | undefined>;
  setNote(jobId: string, values: string[]): Promise<void>;
  deleteNote(jobId: string): Promise<void>;
}

/**
 * The adapter's own note that a job's photo is in the chat: one small write on its own record,
 * made the moment Telegram answers, so it lands before anything else (the job record's write
 * waits its turn behind other job writes). It is turned into the job's delivery record next.
 */
const sentNote = (jobId: string) => `${jobId}:sent`;

export interface DeliveryDeps {
  api: Api;
  jobs: JobService;
  config: Config;
  log: Logger;
  notes: ResultNotes;
}

export class Deliveries {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly attempts = new Map<string, number>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly deps: DeliveryDeps) {}

  /** Delivers once even if asked twice (a done event and the start-up sweep can overlap). */
  deliver(job: Job, statusMessageId: number | null): Promise<void> {
    const running = this.inflight.get(job.id);
    if (running) return running;
    const task = this.run(job, statusMessageId).finally(() => this.inflight.delete(job.id));
    this.inflight.set(job.id, task);
    return task;
  }

  /** Resolves when every delivery under way has finished. */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }

  private async run(job: Job, statusMessageId: number | null): Promise<void> {
    const { jobs, log: rootLog } = this.deps;
    const log = rootLog.child({ jobId: job.id });
    let fresh: Job;
    try {
      fresh = (await jobs.get(job.id)) ?? job;
    } catch (err) {
      // The store could not say whether it was delivered already: sending now could be a second copy.
      log.error({ err }, 'telegram: could not read the job before delivery; it is tried again at the next start');
      return;
    }
    if (fresh.status !== 'done' || !fresh.result) return;
    const status = statusMessageId ?? readHandle(fresh).statusMessageId;
    const earlier = await this.deps.notes.getNote(sentNote(fresh.id)).catch(() => undefined);
    if (earlier?.[0] && earlier[1]) {
      // The photo went out before a kill, which came before the job record said so.
      log.info({ messageId: earlier[1] }, 'telegram: the photo was sent before a restart; recording its delivery');
      await this.record(fresh, { chatId: earlier[0], messageId: earlier[1] }, log);
      await this.removeStatus(fresh, status, log).catch(() => undefined);
      return;
    }
    // Said before the photo goes: a kill between the photo and the status removal then leaves a
    // true "Done", never a "Drawing…" or "Queued" beside a delivered picture.
    await this.editStatus(fresh, status, DONE_TEXT);
    let sent: { message: Message; details: string };
    try {
      sent = await this.sendPicture(fresh, log);
    } catch (err) {
      await this.failed(fresh, statusMessageId, err, log);
      return;
    }
    // The picture is in the chat: from here on nothing may send it again, in this process or the next.
    this.attempts.delete(fresh.id);
    const { chatId, threadId } = readHandle(fresh);
    const ref = { chatId: String(chatId), messageId: String(sent.message.message_id) };
    await this.deps.notes
      .setNote(sentNote(fresh.id), [ref.chatId, ref.messageId])
      .then(() => log.debug({ messageId: ref.messageId }, 'telegram: photo accepted and noted'))
      .catch((err: unknown) => log.warn({ err }, 'telegram: photo accepted but not noted; the job record follows'));
    await this.record(fresh, ref, log);
    const detailIds = await this.sendDetails(chatId, threadId, sent, log);
    if (detailIds.length > 0) {
      await this.deps.notes.setNote(fresh.id, detailIds).catch((err: unknown) => log.warn({ err }, 'telegram: details message ids not kept'));
    }
    await this.removeStatus(fresh, status, log).catch(() => undefined);
  }

  private async record(job: Job, ref: { chatId: string; messageId: string }, log: Logger): Promise<void> {
    if (await recordDelivery(() => this.deps.jobs.markDelivered(job.id, ref), log)) {
      log.info({ messageId: ref.messageId }, 'telegram: result delivered');
      await this.deps.notes.deleteNote(sentNote(job.id)).catch(() => undefined);
    }
  }

  private async editStatus(job: Job, statusMessageId: number | null, text: string): Promise<void> {
    if (statusMessageId === null) return;
    await this.deps.api.editMessageText(readHandle(job).chatId, statusMessageId, text).catch(() => undefined);
  }

  private async sendPicture(job: Job, log: Logger): Promise<{ message: Message; details: string }> {
    const { api, jobs, config } = this.deps;
    const result = job.result;
    const file = result?.grid ?? result?.images[0]?.file;
    if (!file) throw new MissingPicture();
    const png = await readFile(jobs.filePath(file)).catch(() => {
      throw new MissingPicture();
    });
    const handle = readHandle(job);
    const view = resultView(job, config);
    const { caption, overflow } = fitCaption(view.caption);
    const keyboard = inlineKeyboard(view.buttons, (label) => log.warn({ label }, 'telegram: button data over 64 bytes, left out'));
    const common = { caption, ...(keyboard ? { reply_markup: keyboard } : {}), ...replyOptions(handle.replyTo, handle.threadId) };

    let message: Message;
    try {
      const photo = await encodeForDelivery(png, PHOTO_LIMITS.bytes, {
        maxSideSum: PHOTO_LIMITS.maxSideSum,
        maxAspect: PHOTO_LIMITS.maxAspect,
        // Telegram recompresses photos to JPEG anyway; WebP would arrive as a sticker-like file.
        formats: ['png', 'jpeg'],
        prefer: 'jpeg',
      });
      message = await api.sendPhoto(handle.chatId, new InputFile(photo.data, `${job.id}.${photo.ext}`), common);
    } catch (err) {
      // Telegram refused the picture as a photo (dimensions, processing): the PNG as a file still works.
      if (!(err instanceof GrammyError) || err.error_code !== 400 || classifyFailure(err) !== 'transient') throw err;
      log.warn(describeFailure(err), 'telegram: photo refused, sending the picture as a document');
      const doc = await encodeForDelivery(png, DOCUMENT_BYTES, { formats: ['png', 'jpeg'], prefer: 'jpeg' });
      message = await api.sendDocument(handle.chatId, new InputFile(doc.data, `${job.id}.${doc.ext}`), common);
    }

    return { message, details: [overflow, ...view.details].filter((t) => t.trim().length > 0).join('\n') };
  }

  private async sendDetails(chatId: number, threadId: number | null, sent: { message: Message; details: string }, log: Logger): Promise<string[]> {
    const detailIds: string[] = [];
    for (const piece of sent.details ? splitMessage(sent.details) : []) {
      try {
        const reply = await this.deps.api.sendMessage(chatId, piece, replyOptions(sent.message.message_id, threadId));
        detailIds.push(String(reply.message_id));
      } catch (err) {
        // The picture is already up; missing details are not worth a second photo.
        log.warn(describeFailure(err), 'telegram: details message failed');
        break;
      }
    }
    return detailIds;
  }

  private async removeStatus(job: Job, statusMessageId: number | null, log: Logger): Promise<void> {
    if (statusMessageId === null) return;
    const { chatId } = readHandle(job);
    try {
      await this.deps.api.deleteMessage(chatId, statusMessageId);
    } catch (err) {
      if (classifyFailure(err) === 'message-gone') return;
      log.debug(describeFailure(err), 'telegram: status message not deleted; marking it done instead');
      await this.editStatus(job, statusMessageId, DONE_TEXT);
    }
  }

  private async failed(job: Job, statusMessageId: number | null, err: unknown, log: Logger): Promise<void> {
    const { jobs } = this.deps;
    if (err instanceof MissingPicture) {
      log.warn('telegram: the picture files are gone; the result cannot be delivered');
      await jobs.markUndeliverable(job.id, 'the picture files are gone').catch(() => undefined);
      return;
    }
    if (classifyFailure(err) === 'unreachable') {
      // The member blocked the bot or the bot left the chat: retrying only earns more 403s.
      log.warn(describeFailure(err), 'telegram: chat unreachable; job marked undeliverable');
      await jobs.markUndeliverable(job.id, unreachableReason(err)).catch((e: unknown) => log.error({ err: e }, 'markUndeliverable failed'));
      return;
    }
    const attempt = (this.attempts.get(job.id) ?? 0) + 1;
    this.attempts.set(job.id, attempt);
    const planned = RETRY_DELAYS_MS[attempt - 1];
    // A 429 says exactly how long Telegram wants: never sooner (the flood gate holds the call too).
    const retryAfterMs = err instanceof GrammyError && err.error_code === 429 ? (err.parameters.retry_after ?? 0) * 1000 : 0;
    const delay = planned === undefined ? undefined : Math.max(planned, retryAfterMs);
    if (delay === undefined || this.closed) {
      this.attempts.delete(job.id);
      log.error(describeFailure(err), 'telegram: delivery failed; it is tried again at the next start');
      return;
    }
    log.warn({ ...describeFailure(err), attempt, retryInMs: delay }, 'telegram: delivery failed; will retry');
    await this.editStatus(job, statusMessageId ?? readHandle(job).statusMessageId, `✅ Done, but Telegram did not take the picture yet; trying again in ${formatWait(delay)}.`);
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.deliver(job, statusMessageId);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }
}

/** Tries are close together: a busy store passes quickly, and the member already has the picture. */
const RECORD_DELAYS_MS = [0, 250, 1_000];

/**
 * Records a delivery that has happened. A store that keeps failing leaves the job pending, so the
 * next start may send it once more; re-sending now, on every store hiccup, would be worse.
 */
async function recordDelivery(mark: () => Promise<void>, log: Logger): Promise<boolean> {
  for (const [i, wait] of RECORD_DELAYS_MS.entries()) {
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
    try {
      await mark();
      return true;
    } catch (err) {
      if (i === RECORD_DELAYS_MS.length - 1) log.error({ err }, 'telegram: result sent but its delivery could not be recorded');
    }
  }
  return false;
}

function formatWait(ms: number): string {
  return ms < 60_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

class MissingPicture extends Error {
  constructor() {
    super('picture file missing');
  }
}
