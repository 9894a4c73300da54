// The one entry point adapters call. Whatever goes wrong inside a command, the member gets a
// short, friendly answer and the log gets the error with its context; nothing is thrown.
import { cancel } from './cancel.js';
import { deleteResult } from './delete.js';
import { help } from './help.js';
import { img2img } from './img2img.js';
import { imagine } from './imagine.js';
import { info } from './info.js';
import { queue } from './queue.js';
import { reroll } from './reroll.js';
import { settings } from './settings.js';
import type { CommandContext, CommandName, CommandReply, CommandRequest } from './types.js';
import { upscale } from './upscale.js';
import { vary } from './vary.js';
import { web } from './web.js';

type Handler = (req: CommandRequest, ctx: CommandContext) => Promise<CommandReply>;

const HANDLERS: Record<CommandName, Handler> = {
  imagine,
  reroll,
  vary,
  upscale,
  info,
  cancel,
  delete: deleteResult,
  queue,
  settings,
  help,
  web,
  img2img,
};

export const SOMETHING_WENT_WRONG = 'Something went wrong on our side; please try again in a moment.';

export async function runCommand(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const handler = Object.hasOwn(HANDLERS, req.command) ? HANDLERS[req.command] : undefined;
  if (!handler) return { ok: false, visibility: 'private', text: `Unknown command "${String(req.command)}". Try /help.` };
  try {
    return await handler(req, ctx);
  } catch (err) {
    try {
      ctx.log.error(
        {
          err,
          command: req.command,
          platform: req.requester.platform,
          userId: req.requester.userId,
          ...(req.action ? { jobId: req.action.jobId } : {}),
        },
        'command failed',
      );
    } catch {
      // A broken logger must not turn a handled error into a crash either.
    }
    return { ok: false, visibility: 'private', text: SOMETHING_WENT_WRONG };
  }
}

export { resultView } from './result.js';
export { statusText } from './status.js';
export { isAdmin, mayAct } from './permissions.js';
