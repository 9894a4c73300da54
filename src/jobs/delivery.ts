// Delivery bookkeeping: a delivery is recorded the moment the platform accepts it, so a restart
// delivers every finished job once and never twice.
import { jobLog, type JobsContext } from './context.js';
import { view } from './job-copies.js';
import type { Job, Platform } from './types.js';

export class DeliveryBook {
  constructor(private readonly ctx: JobsContext) {}

  async markDelivered(jobId: string, ref?: Record<string, string>): Promise<void> {
    const job = await this.ctx.store.jobs.get(jobId);
    if (!job) {
      this.ctx.log.warn({ jobId }, 'markDelivered: no such job');
      return;
    }
    if (job.status === 'delivered') return;
    if (job.status === 'done') job.status = 'delivered';
    job.delivery = { at: this.ctx.now(), ...(ref ? { ref: { ...ref } } : {}) };
    await this.ctx.store.jobs.put(job);
    jobLog(this.ctx.log, job).info({ ref }, 'job delivered');
  }

  async markUndeliverable(jobId: string, reason: string): Promise<void> {
    const job = await this.ctx.store.jobs.get(jobId);
    if (!job) return;
    // The status stays "done" (the pictures exist); the delivery note takes it off pendingDeliveries.
    job.delivery = { at: this.ctx.now(), undeliverable: reason };
    await this.ctx.store.jobs.put(job);
    jobLog(this.ctx.log, job).warn({ reason }, 'job undeliverable');
    this.ctx.events.emit({ type: 'undeliverable', job: view(job), reason });
  }

  async markDeleted(jobId: string): Promise<void> {
    const job = await this.ctx.store.jobs.get(jobId);
    if (!job || job.deletedAt !== undefined) return;
    job.deletedAt = this.ctx.now();
    await this.ctx.store.jobs.put(job);
    jobLog(this.ctx.log, job).info('result deleted by its owner or an admin');
  }

  findByMessage(platform: Platform, chatId: string, messageId: string): Promise<Job | undefined> {
    return this.ctx.store.jobs.byMessage(platform, chatId, messageId);
  }

  async pendingDeliveries(platform: Platform): Promise<Job[]> {
    const active = await this.ctx.store.jobs.active();
    return active.filter((j) => j.status === 'done' && !j.delivery && j.target.platform === platform);
  }
}
