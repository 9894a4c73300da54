// 🗑: the adapter deletes the result message; the job record stays until retention sweeps it,
// so the info of a deleted result is not silently lost to the owner, but galleries leave it out.
import { jobForAction } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

export async function deleteResult(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const found = await jobForAction(req, ctx, 'delete');
  if (!found.ok) return found.reply;
  await ctx.jobs.markDeleted(found.value.id);
  return { ok: true, visibility: 'private', text: 'Deleted the result.', deleteJob: found.value };
}
