// Which command serves a button, and which commands start a job: both adapters route by this.
import type { ActionName, CommandName } from './types.js';

const ACTION_COMMANDS: Readonly<Record<ActionName, CommandName>> = {
  reroll: 'reroll',
  vary: 'vary',
  'vary-strong': 'vary',
  upscale: 'upscale',
  info: 'info',
  cancel: 'cancel',
  delete: 'delete',
};

const JOB_STARTERS: ReadonlySet<CommandName> = new Set<CommandName>(['imagine', 'reroll', 'vary', 'upscale']);

export function commandForAction(action: ActionName): CommandName {
  return ACTION_COMMANDS[action];
}

/** These answer by queueing a job, so adapters give them a message that follows the job. */
export function startsJob(command: CommandName): boolean {
  return JOB_STARTERS.has(command);
}
