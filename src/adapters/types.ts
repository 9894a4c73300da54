import type { Logger } from 'pino';
import type { CommandContext } from '../../commands/types.js';
import type { Config } from '../config/schema.js';
import type { JobService } from '../jobs/types.js';

/** What src/main.ts hands each platform adapter. */
export interface AdapterDeps {
  config: Config;
  jobs: JobService;
  commands: CommandContext;
  log: Logger;
  /** The token, from the environment (Config.secrets); never logged. */
  token: string;
}

export interface AdapterHandle {
  readonly platform: 'discord' | 'telegram' | 'web';
  /** Stop intake: no new events are taken; pending deliveries may still be flushed. */
  stop(): Promise<void>;
}
