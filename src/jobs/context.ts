// What the parts of the job service share: the store, the schedule, the events, the files.
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { JobEvents } from './events.js';
import type { ResultFiles } from './result-files.js';
import type { Schedule } from './scheduling.js';
import type { Job, Store } from './types.js';

export interface JobsContext {
  config: Config;
  store: Store;
  log: Logger;
  now: () => number;
  events: JobEvents;
  schedule: Schedule;
  files: ResultFiles;
}

export function jobLog(log: Logger, job: Job): Logger {
  return log.child({ jobId: job.id, platform: job.requester.platform, memberId: job.requester.userId });
}
