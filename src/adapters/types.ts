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
  /**
   * The platform refused the bot for good while it ran (a revoked token): the adapter has stopped
   * its intake and logged one clear line; the caller stops the rest and exits non-zero.
   */
  onFatal?: (reason: string) => void;
}

export interface AdapterHandle {
  readonly platform: 'discord' | 'telegram' | 'web';
  /** Stop intake: no new events are taken; pending deliveries may still be flushed. */
  stop(): Promise<void>;
}
