// With only the bundled demo model installed, a member in Discord or Telegram would get tiny
// emoji pictures with no word of why. The first /imagine queued from each chat after a start
// carries the model notice (in the queue answer and on the result); the web studio shows it on
// its page instead. Kept in memory: after a restart each chat is told once more.
import type { ReplyTarget } from '../src/jobs/types.js';

/** Chats remembered; past this the oldest are forgotten (they may be told a second time). */
const MAX_CHATS = 10_000;

export class ChatNotice {
  private readonly told = new Set<string>();

  constructor(
    private readonly notice: () => string | undefined,
    private readonly maxChats = MAX_CHATS,
  ) {}

  /** The notice, when there is one and this chat has not been told since the start. */
  pending(target: ReplyTarget): string | undefined {
    const notice = this.notice();
    if (!notice || target.platform === 'web' || this.told.has(keyOf(target))) return undefined;
    return notice;
  }

  /** Called once the job that carried the notice was queued (a refused request tells nobody). */
  markTold(target: ReplyTarget): void {
    const key = keyOf(target);
    this.told.delete(key);
    this.told.add(key);
    while (this.told.size > this.maxChats) {
      const oldest = this.told.values().next().value;
      if (oldest === undefined) break;
      this.told.delete(oldest);
    }
  }
}

function keyOf(target: ReplyTarget): string {
  return `${target.platform}:${target.chatId}`;
}
