// Follows Discord jobs from queued to delivered: throttled status edits while they wait and
// draw, then the result as a new message that mentions the member (edits notify nobody), after
// which the status message becomes a short done note (or goes, for channel status messages).
// The interaction's webhook is used while its token lives; the channel afterwards.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { resultView } from '../../../commands/result.js';
import { statusText } from '../../../commands/status.js';
import type { Config } from '../../config/schema.js';
import type { Job, JobEvent, JobService } from '../../jobs/types.js';
import { encodeForDelivery } from '../../render/index.js';
import { RecentKeys } from '../recent-keys.js';
import { cancelRow, resultRows } from './components.js';
import {
  deliveryIsImpossible,
  describeFailure,
  isTooLarge,
  isTransient,
  messageIsGone,
  tokenIsDead,
  type DiscordFailure,
} from './errors.js';
import type { MessageRef, Outbox, OutgoingFile, OutgoingMessage } from './outbox.js';
import { readHandle, TOKEN_LIFETIME_MS, TOKEN_SAFE_AGE_MS, type DiscordHandle } from './target.js';
import type { StatusNotes } from './status-notes.js';
import { EditThrottle } from './throttle.js';
import { clip } from '../text.js';

export const MAX_CONTENT = 2000;
/** Waits before retrying a delivery that failed for a passing reason (5xx, network). */
const RETRY_DELAYS_MS = [2_000, 10_000, 60_000];
/** Retries of recording a delivery that has happened (a busy store passes quickly). */
const RECORD_DELAYS_MS = [0, 250, 1_000];
/** Re-encodes after Discord says "too large" (413 / 40005), each smaller than the last. */
const MAX_SHRINKS = 6;
/** Each shrink aims this far under the size Discord refused. */
const SHRINK_FACTOR = 0.6;
/** A token this close to its end is not used for edits that must land. */
const TOKEN_MARGIN_MS = 20_000;

export const DONE_NOTE = '✅ Done: the result is in a new message below.';
/** Shown while the result is uploaded: if the bot dies before the done note, no live button stays behind. */
export const POSTING_NOTE = '📤 Done drawing; posting the result…';
export const HANDOVER_NOTE =
  '⏳ Still on it. Discord lets me update this reply for 15 minutes only, so the result will be posted in this channel with a mention.';

export interface FollowerDeps {
  config: Config;
  jobs: JobService;
  outbox: Outbox;
  log: Logger;
  /**
   * URL fragments of edits that may be dropped on a 429 (the client's rejectOnRateLimit reads
   * it): progress edits are dropped and retried later with newer content, never queued.
   */
  droppableEdits: Set<string>;
  /** Resolves once the REST client has its token (channel messages need it). */
  ready: Promise<void>;
  /** Per-file upload limit of the bot's own channel messages in a guild (its boost tier). */
  uploadLimit: (guildId: string | undefined) => number;
  /** Status message ids and unfinished "posting" notes, kept across restarts. */
  notes: StatusNotes;
  now?: () => number;
}

/** Caption, then as many detail lines as fit Discord's 2000 characters. */
export function composeContent(caption: string, details: string[], reserve = 0): string {
  const budget = MAX_CONTENT - reserve;
  let text = clip(caption, budget);
  for (const line of details) {
    if (text.length + 1 + line.length > budget) break;
    text += `\n${line}`;
  }
  return text;
}

function withMention(userId: string, content: string): string {
  const mention = `<@${userId}> `;
  const room = MAX_CONTENT - mention.length;
  return mention + clip(content, room);
}

function undeliverableText(f: DiscordFailure, channelId: string): string {
  const why = f.code === 50001 ? 'Missing Access' : f.code === 50013 ? 'Missing Permissions' : `error ${f.code ?? f.status ?? f.kind}`;
  return (
    `I could not post your picture in <#${channelId}>: Discord refused it (${why}). ` +
    'A moderator can fix it by giving me View Channel, Send Messages, Attach Files and Read Message History there.'
  );
}

interface StatusState {
  text: string;
  preview?: Buffer;
}

class JobTracker {
  readonly jobId: string;
  #job: Job;
  readonly #handle: DiscordHandle;
  readonly #deps: FollowerDeps;
  readonly #log: Logger;
  readonly #throttle: EditThrottle<StatusState>;
  #chain: Promise<void> = Promise.resolve();
  #tokenDead = false;
  /** The interaction reply got the hand-over note: no more edits through the token. */
  #handedOver = false;
  #handoverTimer: NodeJS.Timeout | undefined;
  #statusMessageId: string | undefined;
  /** The remembered status message id was looked up (once per life). */
  #recalled = false;
  #statusGone = false;
  /** The status message shows something (not "thinking…"): follow-ups no longer replace it. */
  #shown = false;
  #shownWaiters: ((shown: boolean) => void)[] = [];
  #sawEvent = false;
  #finished = false;
  /** The final answer's work is over (whatever its outcome). */
  #delivered = false;
  readonly #closing: AbortController;
  /** The interaction's acknowledgement, while it is still on its way: nothing is sent before it. */
  readonly #ack: Promise<boolean> | undefined;

  constructor(job: Job, deps: FollowerDeps, closing: AbortController, ack: Promise<boolean> | undefined) {
    this.jobId = job.id;
    this.#ack = ack;
    this.#job = job;
    this.#deps = deps;
    this.#closing = closing;
    this.#handle = readHandle(job.target, job.requester.userId);
    this.#log = deps.log.child({ jobId: job.id, platform: 'discord', userId: job.requester.userId });
    this.#throttle = new EditThrottle({
      intervalMs: deps.config.discord.progressEditMs,
      send: (s) => this.#sendStatus(s),
      ...(deps.now ? { now: deps.now } : {}),
    });
    this.#scheduleHandover();
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** The first answer after the command queued the job; later events win over it. */
  initial(text: string): void {
    if (!this.#sawEvent) this.#throttle.push({ text });
  }

  /** true once the status message shows something; false if it never will (the job ended first). */
  whenShown(): Promise<boolean> {
    if (this.#shown || this.#delivered) return Promise.resolve(this.#shown);
    return new Promise((resolve) => this.#shownWaiters.push(resolve));
  }

  #markShown(shown: boolean): void {
    if (shown) this.#shown = true;
    const waiters = this.#shownWaiters;
    this.#shownWaiters = [];
    for (const w of waiters) w(shown);
  }

  onEvent(event: JobEvent): void {
    this.#sawEvent = true;
    this.#job = event.job;
    switch (event.type) {
      case 'queued':
      case 'moved':
      case 'resumed':
      case 'started':
      case 'stage':
        this.#throttle.push({ text: statusText(event) });
        return;
      case 'progress':
        this.#throttle.push({ text: statusText(event), ...(event.preview ? { preview: event.preview.png } : {}) });
        return;
      case 'done':
        this.#finish(() => this.#deliverResult());
        return;
      case 'failed':
      case 'cancelled':
        this.#finish(() => this.#deliverText(statusText(event)));
        return;
    }
  }

  /** Deliver a job found done at start-up (finished while the bot was away). */
  deliverPending(): Promise<void> {
    this.#finish(() => this.#deliverResult());
    return this.settled();
  }

  settled(): Promise<void> {
    return this.#chain;
  }

  async close(): Promise<void> {
    clearTimeout(this.#handoverTimer);
    await this.#throttle.close();
  }

  #finish(work: () => Promise<void>): void {
    this.#finished = true;
    clearTimeout(this.#handoverTimer);
    this.#chain = this.#chain
      .then(async () => {
        await this.#throttle.close();
        await this.#deps.ready;
        await this.#acknowledged();
        await work();
      })
      .catch((err: unknown) => this.#log.error({ failure: describeFailure(err) }, 'discord delivery crashed'))
      .finally(() => {
        this.#delivered = true;
        this.#markShown(this.#shown);
      });
  }

  #now(): number {
    return (this.#deps.now ?? Date.now)();
  }

  #tokenAge(): number {
    const h = this.#handle;
    return h.kind === 'interaction' ? this.#now() - h.createdAt : Number.POSITIVE_INFINITY;
  }

  /** The token is young enough to start an upload or a status edit through it. */
  #tokenFresh(): boolean {
    return this.#handle.kind === 'interaction' && !this.#tokenDead && !this.#handedOver && this.#tokenAge() < TOKEN_SAFE_AGE_MS;
  }

  /** The token still works for one last short edit. */
  #tokenUsable(): boolean {
    return this.#handle.kind === 'interaction' && !this.#tokenDead && this.#tokenAge() < TOKEN_LIFETIME_MS - TOKEN_MARGIN_MS;
  }

  // ---- status edits ----

  /** Before the token dies, the interaction reply says where the result will come, without buttons. */
  #scheduleHandover(): void {
    if (this.#handle.kind !== 'interaction') return;
    const wait = TOKEN_SAFE_AGE_MS - this.#tokenAge();
    if (wait <= 0 || this.#finished) return;
    this.#handoverTimer = setTimeout(() => void this.#handOver(), wait);
    this.#handoverTimer.unref();
  }

  async #handOver(): Promise<void> {
    if (this.#finished || this.#handedOver || this.#closing.signal.aborted) return;
    this.#handedOver = true;
    await this.#throttle.close();
    if (this.#finished) return;
    await this.#editOriginal({ content: HANDOVER_NOTE, components: [], clearAttachments: true });
  }

  /** Waits for the acknowledgement; an interaction Discord never took has no reply to edit. */
  async #acknowledged(): Promise<void> {
    if (this.#ack && !(await this.#ack)) this.#tokenDead = true;
  }

  async #sendStatus(state: StatusState): Promise<void> {
    await this.#acknowledged();
    if (this.#tokenDead || this.#handedOver || this.#statusGone || this.#closing.signal.aborted) return;
    const msg: OutgoingMessage = {
      content: state.text,
      components: cancelRow(this.jobId),
      ...(state.preview ? { files: [{ name: 'preview.png', data: state.preview }] } : {}),
    };
    const h = this.#handle;
    let marker: string | undefined;
    try {
      if (h.kind === 'interaction') {
        if (!this.#tokenFresh()) {
          void this.#handOver();
          return;
        }
        // Only this reply's edits: a follow-up on the same token must wait out a 429, not vanish.
        marker = `${h.token}/messages/`;
        this.#deps.droppableEdits.add(marker);
        await this.#deps.outbox.editOriginal(h.applicationId, h.token, msg);
      } else {
        await this.#deps.ready;
        // The status names the member without pinging: the result message is the one that pings.
        const content = withMention(h.userId, state.text);
        await this.#recallStatusMessage();
        if (!this.#statusMessageId) {
          const ref = await this.#deps.outbox.send(this.#job.target.chatId, { ...msg, content, mentionUsers: [] });
          this.#statusMessageId = ref.messageId;
          await this.#deps.notes
            .rememberStatusMessage(this.jobId, ref.messageId)
            .catch((err: unknown) => this.#log.warn({ err }, 'could not note the status message id'));
        } else {
          marker = `/messages/${this.#statusMessageId}`;
          this.#deps.droppableEdits.add(marker);
          await this.#deps.outbox.edit(this.#job.target.chatId, this.#statusMessageId, { ...msg, content });
        }
      }
      this.#markShown(true);
    } catch (err) {
      this.#onStatusFailure(describeFailure(err));
    } finally {
      if (marker) this.#deps.droppableEdits.delete(marker);
    }
  }

  #onStatusFailure(f: DiscordFailure): void {
    if (f.kind === 'rate-limit') {
      // Discord's retry_after, as it asked: no shorter, and no arbitrary floor.
      this.#throttle.backOff(f.retryAfterMs ?? 1_000);
      this.#log.debug({ failure: f }, 'status edit rate-limited; backing off');
    } else if (tokenIsDead(f)) {
      this.#tokenDead = true;
      this.#log.info({ failure: f }, 'interaction token no longer works; the result will go to the channel');
    } else if (messageIsGone(f)) {
      this.#statusGone = true;
    } else {
      this.#log.debug({ failure: f }, 'status edit failed');
    }
  }

  /** One edit of the interaction's reply that must land; false when it could not. */
  async #editOriginal(msg: OutgoingMessage): Promise<boolean> {
    const h = this.#handle;
    if (h.kind !== 'interaction' || !this.#tokenUsable()) return false;
    try {
      await this.#deps.outbox.editOriginal(h.applicationId, h.token, msg);
      this.#markShown(true);
      return true;
    } catch (err) {
      const f = describeFailure(err);
      if (tokenIsDead(f)) this.#tokenDead = true;
      if (messageIsGone(f)) this.#statusGone = true;
      this.#log.info({ failure: f }, 'could not update the interaction reply');
      return false;
    }
  }

  /** A channel status message sent before a restart is this job's status message still. */
  async #recallStatusMessage(): Promise<void> {
    if (this.#statusMessageId || this.#recalled) return;
    this.#recalled = true;
    try {
      this.#statusMessageId ??= await this.#deps.notes.statusMessage(this.jobId);
    } catch (err) {
      this.#log.warn({ err }, 'could not read the status message id');
    }
  }

  /** The status says the job is over; its notes go (the job's record says the rest). */
  async #forgetNotes(): Promise<void> {
    await this.#deps.notes.settled(this.jobId).catch((err: unknown) => this.#log.warn({ err }, 'could not clear the status notes'));
  }

  /**
   * The status message gets its last word and loses its buttons: `done` removes a channel status
   * message (the result below says it all) or turns the interaction reply into a done note;
   * `final` shows the text. false: there was no status message that could take it.
   */
  async #settleStatus(text: string, mode: 'done' | 'final'): Promise<boolean> {
    if (this.#handle.kind === 'interaction') {
      if (this.#statusGone) return false;
      return this.#editOriginal({ content: text, components: [], clearAttachments: true });
    }
    await this.#recallStatusMessage();
    const messageId = this.#statusMessageId;
    if (!messageId || this.#statusGone) return false;
    const channelId = this.#job.target.chatId;
    try {
      if (mode === 'done') await this.#deps.outbox.delete(channelId, messageId);
      else await this.#deps.outbox.edit(channelId, messageId, { content: withMention(this.#handle.userId, text), components: [], clearAttachments: true });
      return true;
    } catch (err) {
      const f = describeFailure(err);
      this.#log.info({ failure: f }, 'could not update the status message');
      if (mode === 'done' && !messageIsGone(f)) {
        // Could not delete it: at least take its buttons away.
        return this.#deps.outbox
          .edit(channelId, messageId, { content: withMention(this.#handle.userId, text), components: [], clearAttachments: true })
          .then(() => true, () => false);
      }
      return false;
    }
  }

  // ---- final answers ----

  /** A failure or cancellation: shown in the status message, else posted with a mention. */
  async #deliverText(text: string): Promise<void> {
    if (!(await this.#settleStatus(text, 'final'))) {
      try {
        await this.#deps.outbox.send(this.#job.target.chatId, {
          content: withMention(this.#handle.userId, text),
          mentionUsers: [this.#handle.userId],
        });
      } catch (err) {
        this.#log.warn({ failure: describeFailure(err) }, 'could not post the final status');
      }
    }
    await this.#forgetNotes();
  }

  async #deliverResult(): Promise<void> {
    const { jobs, config } = this.#deps;
    const job = (await jobs.get(this.jobId)) ?? this.#job;
    if (job.status === 'delivered') return this.#finishPosted();
    if (job.status !== 'done' || !job.result) {
      this.#log.warn({ status: job.status }, 'asked to deliver a job that has no result');
      return;
    }
    const view = resultView(job, config);
    // The status loses its Cancel button before the upload: the delivery must be recorded
    // before anything else once Discord has the picture, so a kill right after that would
    // otherwise leave "Drawing… [Cancel]" behind. It also stops a reply that still shows
    // "thinking…" from being replaced by the follow-up (and the result then by the done note).
    await this.#deps.notes.markPosting(job.id).catch((err: unknown) => this.#log.warn({ err }, 'could not note the posting'));
    await this.#settleStatus(POSTING_NOTE, 'final');
    let viaInteraction = this.#tokenFresh() && this.#shown;
    let limit = this.#limit(viaInteraction);
    let picture = await this.#picture(job, limit);
    if (!picture) {
      await jobs.markUndeliverable(job.id, 'the picture files are missing');
      await this.#deliverText('The pictures of this job are gone (the files were removed).');
      return;
    }
    const content = withMention(this.#handle.userId, composeContent(view.caption, view.details, 30));
    const msg = (file: OutgoingFile): OutgoingMessage => ({
      content,
      components: resultRows(view.buttons),
      files: [file],
      mentionUsers: [this.#handle.userId],
    });
    let shrinks = 0;
    for (let attempt = 0; ; ) {
      let ref: MessageRef;
      try {
        ref = await this.#postResult(msg(picture), viaInteraction);
      } catch (err) {
        const f = describeFailure(err);
        if (viaInteraction && (tokenIsDead(f) || messageIsGone(f))) {
          this.#tokenDead = true;
          viaInteraction = false;
          this.#log.info({ failure: f }, 'interaction webhook unavailable; posting to the channel');
          limit = this.#limit(false);
          picture = (await this.#picture(job, limit)) ?? picture;
          continue;
        }
        if (isTooLarge(f) && shrinks < MAX_SHRINKS) {
          shrinks++;
          // The limit we believed was wrong: aim under what was refused, and again if need be.
          limit = Math.max(1, Math.floor(Math.min(limit, picture.data.length) * SHRINK_FACTOR));
          this.#log.info({ failure: f, bytes: picture.data.length, newLimit: limit }, 'picture too large for Discord; shrinking');
          picture = (await this.#picture(job, limit)) ?? picture;
          continue;
        }
        if (deliveryIsImpossible(f)) {
          this.#log.warn({ failure: f }, 'result cannot be delivered here');
          await jobs.markUndeliverable(job.id, `Discord refused the message (${f.code ?? f.status ?? f.kind})`);
          await this.#tellUndeliverable(f);
          return;
        }
        const delay = RETRY_DELAYS_MS[attempt++];
        if (!isTransient(f) || delay === undefined || this.#closing.signal.aborted) {
          // Left as done: pendingDeliveries picks it up at the next start.
          this.#log.warn({ failure: f }, 'result delivery failed; it stays pending');
          return;
        }
        this.#log.info({ failure: f, retryInMs: delay }, 'result delivery failed; retrying');
        if (!(await sleep(delay, this.#closing.signal))) return;
        continue;
      }
      // Discord has the picture. Recording that comes before anything else, so a kill from
      // here on cannot make the next start post it again.
      if (await this.#recordDelivery(job.id, ref)) {
        this.#log.info({ messageId: ref.messageId, bytes: picture.data.length }, 'result delivered');
      }
      return this.#finishPosted();
    }
  }

  /**
   * The result is out: the status becomes the done note. A status that could not take it (the
   * edit failed for a passing reason) stays noted, and the next start tries again.
   */
  async #finishPosted(): Promise<void> {
    const settled = await this.#settleStatus(DONE_NOTE, 'done');
    if (settled || this.#statusGone || !this.#canStillSettle()) await this.#forgetNotes();
  }

  /** Whether a later start could still reach the status message. */
  #canStillSettle(): boolean {
    return this.#handle.kind === 'interaction' ? this.#tokenUsable() : this.#statusMessageId !== undefined;
  }

  /** The member hears why the picture did not come, and the status loses its live buttons. */
  async #tellUndeliverable(f: DiscordFailure): Promise<void> {
    const text = undeliverableText(f, this.#job.target.chatId);
    if (!(await this.#settleStatus(text, 'final'))) {
      try {
        await this.#deps.outbox.dm(this.#handle.userId, { content: text });
      } catch (err) {
        this.#log.warn({ failure: describeFailure(err) }, 'could not tell the member why the result was not posted');
      }
    }
    await this.#forgetNotes();
  }

  #limit(viaInteraction: boolean): number {
    const h = this.#handle;
    if (viaInteraction && h.kind === 'interaction') return h.attachmentSizeLimit;
    return this.#deps.uploadLimit(this.#job.target.guildId);
  }

  /** The result as a new message that pings the member: a follow-up while the token lives, else a channel post. */
  async #postResult(msg: OutgoingMessage, viaInteraction: boolean): Promise<MessageRef> {
    const h = this.#handle;
    if (viaInteraction && h.kind === 'interaction') return this.#deps.outbox.followUp(h.applicationId, h.token, msg);
    const replyTo = h.kind === 'channel' ? h.replyTo : null;
    return this.#deps.outbox.send(this.#job.target.chatId, { ...msg, ...(replyTo ? { replyTo } : {}) });
  }

  /**
   * A store that keeps failing leaves the job pending, so the next start may post it once more;
   * posting again now, on every store hiccup, would be worse. Tries are close together.
   */
  async #recordDelivery(jobId: string, ref: MessageRef): Promise<boolean> {
    for (const [i, wait] of RECORD_DELAYS_MS.entries()) {
      if (wait > 0 && !(await sleep(wait, this.#closing.signal))) return false;
      try {
        await this.#deps.jobs.markDelivered(jobId, { chatId: ref.channelId, messageId: ref.messageId });
        return true;
      } catch (err) {
        if (i === RECORD_DELAYS_MS.length - 1) {
          this.#log.error({ err, messageId: ref.messageId }, 'result posted but its delivery could not be recorded');
        }
      }
    }
    return false;
  }

  /** The grid (or the single picture) fitted under the upload limit. */
  async #picture(job: Job, byteLimit: number): Promise<OutgoingFile | undefined> {
    const rel = job.result?.grid ?? job.result?.images[0]?.file;
    if (!rel) return undefined;
    let png: Buffer;
    try {
      png = await readFile(this.#deps.jobs.filePath(rel));
    } catch {
      return undefined;
    }
    const out = await encodeForDelivery(png, byteLimit);
    return { name: `imagine-${job.id}.${out.ext}`, data: out.data };
  }
}

/** Resolves true after `ms`, or false as soon as the signal aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const timer = setTimeout(() => resolve(true), ms);
    timer.unref();
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export class JobFollower {
  readonly #deps: FollowerDeps;
  readonly #trackers = new Map<string, JobTracker>();
  /** Jobs finished in this process, so a late or repeated event does not start them again. */
  readonly #finished = new RecentKeys(2_000);
  readonly #closing = new AbortController();
  /** Interaction tokens whose acknowledgement is on its way. */
  readonly #acks = new Map<string, Promise<boolean>>();
  /** Set when stop begins: no new job is taken up (its events go to the next start). */
  #closed = false;

  constructor(deps: FollowerDeps) {
    this.#deps = deps;
  }

  /** The JobService listener: only Discord jobs. */
  readonly onEvent = (event: JobEvent): void => {
    if (event.job.target.platform !== 'discord' || this.#closed) return;
    const tracker = this.#tracker(event.job);
    if (!tracker) return;
    tracker.onEvent(event);
    if (tracker.finished) this.#retire(tracker);
  };

  /**
   * A command just queued this job: show its first answer. Resolves true once the status
   * message shows it, so a follow-up sent then cannot take the deferred reply's place.
   */
  follow(job: Job, firstText: string): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (job.status !== 'queued' && job.status !== 'running') return Promise.resolve(false);
    const tracker = this.#tracker(job);
    if (!tracker) return Promise.resolve(false);
    tracker.initial(firstText);
    return tracker.whenShown();
  }

  /**
   * The command for this interaction runs before Discord is answered (so the answer's privacy is
   * known): a job it queues must not edit the reply before the acknowledgement exists. Call the
   * returned function with whether Discord took the acknowledgement.
   */
  acknowledging(token: string): (acked: boolean) => void {
    let settle!: (acked: boolean) => void;
    const ack = new Promise<boolean>((resolve) => (settle = resolve));
    this.#acks.set(token, ack);
    return (acked) => {
      settle(acked);
      this.#acks.delete(token);
    };
  }

  /** Jobs that finished while the bot was away (or whose upload failed): deliver them now. */
  async deliverPending(): Promise<void> {
    await this.#settlePosted();
    const pending = await this.#deps.jobs.pendingDeliveries('discord');
    for (const job of pending) {
      if (this.#closed) return;
      const tracker = this.#tracker(job);
      if (!tracker) continue;
      const done = tracker.deliverPending();
      this.#retire(tracker);
      await done;
    }
  }

  /**
   * Results that went out just before a kill, whose status still says "posting the result…":
   * it gets the done note now. Jobs not yet delivered are left to pendingDeliveries.
   */
  async #settlePosted(): Promise<void> {
    const { jobs, notes, log } = this.#deps;
    for (const jobId of await notes.posting()) {
      if (this.#closed) return;
      const job = await jobs.get(jobId);
      if (!job) {
        await notes.settled(jobId);
        continue;
      }
      if (job.status !== 'delivered') continue;
      const tracker = this.#tracker(job);
      if (!tracker) continue;
      log.info({ jobId }, 'finishing the status of a result posted before a restart');
      const done = tracker.deliverPending();
      this.#retire(tracker);
      await done;
    }
  }

  /** Stop status edits; give deliveries in flight up to `graceMs` to finish. */
  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    const trackers = [...this.#trackers.values()];
    await Promise.all(trackers.map((t) => t.close()));
    const settled = Promise.all(trackers.map((t) => t.settled()));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([settled, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.#closing.abort();
  }

  #tracker(job: Job): JobTracker | undefined {
    if (this.#finished.has(job.id)) return undefined;
    let tracker = this.#trackers.get(job.id);
    if (!tracker) {
      const token = job.target.handle.token;
      tracker = new JobTracker(job, this.#deps, this.#closing, typeof token === 'string' ? this.#acks.get(token) : undefined);
      this.#trackers.set(job.id, tracker);
    }
    return tracker;
  }

  #retire(tracker: JobTracker): void {
    this.#finished.add(tracker.jobId);
    void tracker.settled().then(() => this.#trackers.delete(tracker.jobId));
  }
}
