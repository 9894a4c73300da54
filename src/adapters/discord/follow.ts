// Follows Discord jobs from queued to delivered: throttled status edits while they wait and
// draw, then the result (or the failure) in the interaction's reply, or as a channel message
// that mentions the member when the interaction token is too old or already dead.
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
import { readHandle, TOKEN_SAFE_AGE_MS, type DiscordHandle } from './target.js';
import { EditThrottle } from './throttle.js';
import { clip } from '../text.js';

export const MAX_CONTENT = 2000;
/** Waits before retrying a delivery that failed for a passing reason (5xx, network). */
const RETRY_DELAYS_MS = [2_000, 10_000, 60_000];
/** Retries of recording a delivery that has happened (a busy store passes quickly). */
const RECORD_DELAYS_MS = [0, 250, 1_000];

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
  #statusMessageId: string | undefined;
  #statusGone = false;
  #sawEvent = false;
  #finished = false;
  readonly #closing: AbortController;

  constructor(job: Job, deps: FollowerDeps, closing: AbortController) {
    this.jobId = job.id;
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
  }

  get finished(): boolean {
    return this.#finished;
  }

  /** The first answer after the command queued the job; later events win over it. */
  initial(text: string): void {
    if (!this.#sawEvent) this.#throttle.push({ text });
  }

  onEvent(event: JobEvent): void {
    this.#sawEvent = true;
    this.#job = event.job;
    switch (event.type) {
      case 'queued':
      case 'moved':
      case 'resumed':
      case 'started':
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
    await this.#throttle.close();
  }

  #finish(work: () => Promise<void>): void {
    this.#finished = true;
    this.#chain = this.#chain
      .then(async () => {
        await this.#throttle.close();
        await this.#deps.ready;
        await work();
      })
      .catch((err: unknown) => this.#log.error({ failure: describeFailure(err) }, 'discord delivery crashed'));
  }

  // ---- status edits ----

  async #sendStatus(state: StatusState): Promise<void> {
    if (this.#tokenDead || this.#statusGone || this.#closing.signal.aborted) return;
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
          this.#tokenDead = true;
          return;
        }
        marker = h.token;
        this.#deps.droppableEdits.add(marker);
        await this.#deps.outbox.editOriginal(h.applicationId, h.token, msg);
      } else {
        await this.#deps.ready;
        if (!this.#statusMessageId) {
          const ref = await this.#deps.outbox.send(this.#job.target.chatId, {
            ...msg,
            content: withMention(h.userId, state.text),
            mentionUsers: [h.userId],
            ...(h.replyTo ? { replyTo: h.replyTo } : {}),
          });
          this.#statusMessageId = ref.messageId;
        } else {
          marker = `/messages/${this.#statusMessageId}`;
          this.#deps.droppableEdits.add(marker);
          await this.#deps.outbox.edit(this.#job.target.chatId, this.#statusMessageId, { ...msg, content: withMention(h.userId, state.text) });
        }
      }
    } catch (err) {
      this.#onStatusFailure(describeFailure(err));
    } finally {
      if (marker) this.#deps.droppableEdits.delete(marker);
    }
  }

  #onStatusFailure(f: DiscordFailure): void {
    if (f.kind === 'rate-limit') {
      this.#throttle.backOff(Math.max(f.retryAfterMs ?? 0, 1_000));
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

  #tokenFresh(): boolean {
    const h = this.#handle;
    if (h.kind !== 'interaction' || this.#tokenDead) return false;
    return (this.#deps.now ?? Date.now)() - h.createdAt < TOKEN_SAFE_AGE_MS;
  }

  // ---- final answers ----

  async #deliverText(text: string): Promise<void> {
    try {
      await this.#post({ content: text, components: [], clearAttachments: true });
    } catch (err) {
      this.#log.warn({ failure: describeFailure(err) }, 'could not post the final status');
    }
  }

  async #deliverResult(): Promise<void> {
    const { jobs, config } = this.#deps;
    const job = (await jobs.get(this.jobId)) ?? this.#job;
    if (job.status === 'delivered') return;
    if (job.status !== 'done' || !job.result) {
      this.#log.warn({ status: job.status }, 'asked to deliver a job that has no result');
      return;
    }
    const view = resultView(job, config);
    let limit = this.#handle.attachmentSizeLimit;
    let picture = await this.#picture(job, limit);
    if (!picture) {
      await jobs.markUndeliverable(job.id, 'the picture files are missing');
      await this.#deliverText('The pictures of this job are gone (the files were removed).');
      return;
    }
    const msg = (file: OutgoingFile): OutgoingMessage => ({
      content: composeContent(view.caption, view.details, 30),
      components: resultRows(view.buttons),
      files: [file],
    });
    let shrunk = false;
    for (let attempt = 0; ; attempt++) {
      let ref: MessageRef;
      try {
        ref = await this.#post(msg(picture));
      } catch (err) {
        const f = describeFailure(err);
        if (isTooLarge(f) && !shrunk) {
          shrunk = true;
          limit = Math.floor(limit / 2);
          picture = (await this.#picture(job, limit)) ?? picture;
          continue;
        }
        if (deliveryIsImpossible(f)) {
          this.#log.warn({ failure: f }, 'result cannot be delivered here');
          await jobs.markUndeliverable(job.id, `Discord refused the message (${f.code ?? f.status ?? f.kind})`);
          return;
        }
        const delay = RETRY_DELAYS_MS[attempt];
        if (!isTransient(f) || delay === undefined || this.#closing.signal.aborted) {
          // Left as done: pendingDeliveries picks it up at the next start.
          this.#log.warn({ failure: f }, 'result delivery failed; it stays pending');
          return;
        }
        this.#log.info({ failure: f, retryInMs: delay }, 'result delivery failed; retrying');
        if (!(await sleep(delay, this.#closing.signal))) return;
        continue;
      }
      // The picture is posted: a store that fails now must not make us post it again.
      if (await this.#recordDelivery(job.id, ref)) {
        this.#log.info({ messageId: ref.messageId, bytes: picture.data.length }, 'result delivered');
      }
      return;
    }
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

  /**
   * The interaction's reply while its token lives; otherwise (or when the edit says the token
   * is dead) a channel message that mentions the member, so nothing is lost.
   */
  async #post(msg: OutgoingMessage): Promise<MessageRef> {
    const h = this.#handle;
    const outbox = this.#deps.outbox;
    if (h.kind === 'interaction' && this.#tokenFresh()) {
      try {
        return await outbox.editOriginal(h.applicationId, h.token, msg);
      } catch (err) {
        const f = describeFailure(err);
        if (!tokenIsDead(f) && !messageIsGone(f)) throw err;
        this.#tokenDead = true;
        this.#log.info({ failure: f }, 'interaction reply unavailable; posting to the channel');
      }
    }
    const content = withMention(h.userId, msg.content ?? '');
    if (this.#statusMessageId && !this.#statusGone) {
      try {
        return await outbox.edit(this.#job.target.chatId, this.#statusMessageId, { ...msg, content });
      } catch (err) {
        if (!messageIsGone(describeFailure(err))) throw err;
      }
    }
    const replyTo = h.kind === 'channel' ? h.replyTo : null;
    return outbox.send(this.#job.target.chatId, { ...msg, content, mentionUsers: [h.userId], ...(replyTo ? { replyTo } : {}) });
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

  /** A command just queued this job: show its first answer. */
  follow(job: Job, firstText: string): void {
    if (this.#closed) return;
    if (job.status !== 'queued' && job.status !== 'running') return;
    this.#tracker(job)?.initial(firstText);
  }

  /** Jobs that finished while the bot was away (or whose upload failed): deliver them now. */
  async deliverPending(): Promise<void> {
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
      tracker = new JobTracker(job, this.#deps, this.#closing);
      this.#trackers.set(job.id, tracker);
    }
    return tracker;
  }

  #retire(tracker: JobTracker): void {
    this.#finished.add(tracker.jobId);
    void tracker.settled().then(() => this.#trackers.delete(tracker.jobId));
  }
}
