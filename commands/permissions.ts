// Who may do what to whose job. Admins and a job's owner may always act; config decides for
// everyone else (a 🔁 reaction has its own policy, since reactions are easy to add by accident).
import type { Config } from '../src/config/schema.js';
import type { Job, Requester } from '../src/jobs/types.js';
import type { ActionName, CommandRequest } from './types.js';

export function isAdmin(config: Config, requester: Requester): boolean {
  const { users, roles } = config.permissions.admins;
  return users.includes(requester.userId) || requester.roles.some((r) => roles.includes(r));
}

export function isOwner(job: Job, requester: Requester): boolean {
  return job.requester.platform === requester.platform && job.requester.userId === requester.userId;
}

/** The config policy that governs an action, or undefined when anyone may (info). */
function policyFor(config: Config, action: ActionName, via: CommandRequest['via']): 'anyone' | 'owner' | undefined {
  const p = config.permissions;
  switch (action) {
    case 'reroll':
      return via === 'reaction' ? p.reactionReroll : p.reroll;
    case 'vary':
    case 'vary-strong':
      return p.vary;
    case 'upscale':
      return p.upscale;
    case 'cancel':
      return p.cancel;
    case 'delete':
      return p.delete;
    case 'info':
      return undefined;
  }
}

export function mayAct(
  config: Config,
  action: ActionName,
  job: Job,
  requester: Requester,
  via: CommandRequest['via'],
): boolean {
  const policy = policyFor(config, action, via);
  return policy !== 'owner' || isOwner(job, requester) || isAdmin(config, requester);
}

const VERB: Record<ActionName, string> = {
  reroll: 'reroll',
  vary: 'make variations of',
  'vary-strong': 'make variations of',
  upscale: 'upscale',
  info: 'see',
  cancel: 'cancel',
  delete: 'delete',
};

export function refusalText(action: ActionName, job: Job): string {
  return `Only ${job.requester.name || 'the member who asked'} or an admin may ${VERB[action]} this result here.`;
}
