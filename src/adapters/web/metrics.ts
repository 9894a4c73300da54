// GET /metrics in Prometheus' text format, counted from the job events every adapter sees.
import type { JobEvent, JobService } from '../../jobs/types.js';

type Labels = Record<string, string>;

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

class Family {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge',
  ) {}
  add(labels: Labels, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }
  /** Values by the `model` label (for the families that have one). */
  entries(): [string, number][] {
    return [...this.values.values()].map(({ labels, value }) => [labels.model ?? '', value]);
  }
  get(model: string): number | undefined {
    return this.values.get(labelText({ model }))?.value;
  }
  render(): string[] {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const { labels, value } of this.values.values()) lines.push(`${this.name}${labelText(labels)} ${value}`);
    return lines;
  }
}

/**
 * A bounded label for a delivery failure: the platform's error code where the adapter gave one
 * ("Discord refused the message (50013)" → "50013"), else the reason's first words, so the
 * number of series stays small whatever text an API answers with.
 */
export function deliveryFailureReason(reason: string): string {
  const code = /\((\w{1,12})\)\s*$/.exec(reason)?.[1];
  if (code) return code;
  const words = reason.toLowerCase().replace(/^\w+:\s*/, '').match(/[a-z]+/g) ?? [];
  return words.slice(0, 4).join('_') || 'unknown';
}

/** How many failures the admin view lists. */
const RECENT_FAILURES = 20;

export interface FailureNote {
  jobId: string;
  platform: string;
  member: string;
  prompt: string;
  reason: string;
  at: number;
}

export class Metrics {
  /** The newest first; since this process started. */
  readonly failures: FailureNote[] = [];
  /** The model of the job that ran last: the one the engine holds now. */
  lastModel: string | undefined;
  private readonly counts = new Map<string, number>();
  private readonly started = Date.now();
  private readonly events = new Family('imagine_job_events_total', 'Job events since start, by kind of event and platform.', 'counter');
  private readonly stepSeconds = new Family('imagine_step_seconds_sum', 'Seconds the engine spent per model on finished jobs.', 'counter');
  private readonly deliveryFailures = new Family(
    'imagine_delivery_failures_total',
    'Finished jobs that could not be delivered (never retried), by platform and reason.',
    'counter',
  );
  private readonly steps = new Family('imagine_steps_total', 'Sampling steps (times pictures) of finished jobs, per model.', 'counter');
  private busyMs = 0;
  private runningSince: number | undefined;

  constructor(private readonly jobs: JobService) {}

  observe(event: JobEvent): void {
    if (event.type === 'progress' || event.type === 'moved' || event.type === 'stage') return;
    const platform = event.job.target.platform;
    this.events.add({ event: event.type, platform });
    this.counts.set(event.type, (this.counts.get(event.type) ?? 0) + 1);
    if (event.type === 'started') this.lastModel = event.job.spec.model;
    if (event.type === 'undeliverable') this.deliveryFailures.add({ platform, reason: deliveryFailureReason(event.reason) });
    if (event.type === 'failed') {
      const { job } = event;
      this.failures.unshift({ jobId: job.id, platform, member: job.requester.name, prompt: job.spec.prompt, reason: event.reason, at: Date.now() });
      this.failures.length = Math.min(this.failures.length, RECENT_FAILURES);
    }
    if (event.type === 'started') this.runningSince = Date.now();
    if (event.type === 'done' || event.type === 'failed' || event.type === 'cancelled') {
      if (this.runningSince !== undefined) this.busyMs += Date.now() - this.runningSince;
      this.runningSince = undefined;
    }
    const result = event.type === 'done' ? event.job.result : undefined;
    if (result) {
      const model = result.model;
      this.stepSeconds.add({ model }, result.durationMs / 1000);
      this.steps.add({ model }, event.job.spec.steps * result.images.length);
    }
  }

  /** Job events by kind since start (queued, started, done, failed, cancelled, resumed). */
  eventCounts(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  /** Measured seconds per step (per picture) by model, from the jobs finished since start. */
  secondsPerStep(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [model, seconds] of this.stepSeconds.entries()) {
      const steps = this.steps.get(model);
      if (steps) out[model] = Number((seconds / steps).toFixed(4));
    }
    return out;
  }

  busyRatio(): number {
    const now = Date.now();
    const busy = this.busyMs + (this.runningSince !== undefined ? now - this.runningSince : 0);
    return busy / Math.max(1, now - this.started);
  }

  render(): string {
    const snap = this.jobs.snapshot();
    const byPlatform = new Family('imagine_queue_depth', 'Jobs waiting or running now, by platform.', 'gauge');
    for (const w of snap.waiting) byPlatform.add({ platform: w.job.target.platform, status: 'queued' });
    if (snap.running) byPlatform.add({ platform: snap.running.job.target.platform, status: 'running' });
    const mem = process.memoryUsage();
    const lines = [
      ...byPlatform.render(),
      ...this.events.render(),
      ...this.stepSeconds.render(),
      ...this.steps.render(),
      ...this.deliveryFailures.render(),
      '# HELP imagine_engine_busy_ratio Share of the time since start the engine spent drawing.',
      '# TYPE imagine_engine_busy_ratio gauge',
      `imagine_engine_busy_ratio ${this.busyRatio().toFixed(4)}`,
      '# HELP process_resident_memory_bytes Resident memory of the bot process.',
      '# TYPE process_resident_memory_bytes gauge',
      `process_resident_memory_bytes ${mem.rss}`,
      '# HELP process_heap_used_bytes V8 heap in use.',
      '# TYPE process_heap_used_bytes gauge',
      `process_heap_used_bytes ${mem.heapUsed}`,
    ];
    return `${lines.join('\n')}\n`;
  }
}
