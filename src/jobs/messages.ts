// What members are told when the job service says no or a job ends badly: one place, so the
// local and the Redis backends answer in the same words.
import type { Job } from './types.js';

/** `/srv/bot/models/sd15/unet/model.onnx` → `…/sd15/unet/model.onnx`: enough to name the file. */
export function withoutServerPaths(text: string): string {
  return text.replace(/(?:\/[^/\s"'`()]+)+/g, (path) => {
    const parts = path.split('/').filter(Boolean);
    return parts.length > 3 ? `…/${parts.slice(-3).join('/')}` : path;
  });
}

export const MESSAGES = {
  restarting: 'The bot is restarting — try again in a minute.',
  unavailable: 'The drawing service is unavailable — try again in a minute.',
  notSaved: 'Could not save your request — please try again.',
  resultNotSaved: 'Your picture was drawn but could not be saved — please try again.',
  engineFailed: 'The picture engine failed on this request; an admin has been notified.',
  initGone: 'The picture to start from is gone (it was deleted or has expired).',
  notYours: 'That job belongs to someone else — only they or an admin can cancel it.',
  cancelFailed: 'Could not cancel right now — please try again.',
  memberCap: (cap: number) =>
    `You already have ${cap} ${cap === 1 ? 'picture' : 'pictures'} waiting — this club's limit per member. Cancel one with /cancel or wait.`,
  globalCap: (cap: number) => `The queue is full (${cap} jobs) — try again in a few minutes.`,
  crashed: (n: number) => `This request crashed the picture engine ${n} ${n === 1 ? 'time' : 'times'}; it was dropped.`,
  interrupted: (n: number) =>
    `The bot stopped unexpectedly ${n} times while drawing this request, so it was dropped in case it is the cause. Try again, perhaps smaller.`,
  unknownJob: (id: string) => `There is no job ${id}.`,
  alreadyOver: (job: Job) =>
    `That job is already ${job.status === 'done' || job.status === 'delivered' ? 'finished' : job.status}.`,
} as const;

/** An error whose message is meant for the member (anything else is logged and replaced). */
export class MemberFacingError extends Error {}
