// Retention: finished jobs older than retention.days leave the store with their files.
import { jobLog, type JobsContext } from './context.js';
import { filesOf } from './result-files.js';

const DAY_MS = 86_400_000;

export class Retention {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<number> | undefined;

  constructor(private readonly ctx: JobsContext) {}

  /** Sweeps now, then every retention.sweepMinutes. */
  async start(): Promise<void> {
    await this.sweep().catch((err: unknown) => this.ctx.log.error({ err }, 'retention sweep failed'));
    if (this.ctx.config.retention.days > 0) {
      this.timer = setInterval(() => {
        this.sweep().catch((err: unknown) => this.ctx.log.error({ err }, 'retention sweep failed'));
      }, this.ctx.config.retention.sweepMinutes * 60_000);
      this.timer.unref();
    }
  }

  /** Stops the timer and waits for a sweep in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.sweeping?.catch(() => undefined);
  }

  sweep(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    const days = this.ctx.config.retention.days;
    if (days <= 0) return 0;
    const expired = await this.ctx.store.jobs.finishedBefore(this.ctx.now() - days * DAY_MS);
    let removed = 0;
    for (const job of expired) {
      // Files first: if we stop halfway, the record is still there and the next sweep retries.
      for (const file of filesOf(job.result)) {
        try {
          await this.ctx.files.removeWithFolder(file);
        } catch (err) {
          jobLog(this.ctx.log, job).warn({ err, file }, 'could not delete an expired file');
        }
      }
      await this.ctx.store.jobs.delete(job.id);
      removed += 1;
    }
    if (removed > 0) this.ctx.log.info({ removed, days }, 'retention: expired jobs deleted');
    return removed;
  }
}
