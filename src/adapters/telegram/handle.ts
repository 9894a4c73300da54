// What the Telegram adapter keeps in ReplyTarget.handle. It is stored with the job, so a
// status message can still be edited or removed after a restart.
import type { Job, ReplyTarget } from '../../jobs/types.js';

export interface TelegramHandle {
  chatType: string;
  /** The message the result answers: the member's request, or the result a button was pressed on. */
  replyTo: number | null;
  /** The "queued #3 · about 40 s" message this adapter edits as the job moves. */
  statusMessageId: number | null;
  /** Forum topic, so answers stay in the topic the member wrote in. */
  threadId: number | null;
}

export function makeTarget(chatId: number, handle: TelegramHandle): ReplyTarget {
  return { platform: 'telegram', chatId: String(chatId), handle: { ...handle } };
}

export function readHandle(job: Job): TelegramHandle & { chatId: number } {
  const h = job.target.handle;
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
  return {
    chatId: Number(job.target.chatId),
    chatType: typeof h.chatType === 'string' ? h.chatType : 'private',
    replyTo: num(h.replyTo),
    statusMessageId: num(h.statusMessageId),
    threadId: num(h.threadId),
  };
}

/** Options that make a message a reply (still sent if the original was deleted) in the right topic. */
export function replyOptions(replyTo: number | null, threadId: number | null) {
  return {
    ...(replyTo !== null ? { reply_parameters: { message_id: replyTo, allow_sending_without_reply: true } } : {}),
    ...(threadId !== null ? { message_thread_id: threadId } : {}),
  };
}
