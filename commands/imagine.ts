// /imagine: the one parser turns text or options into a spec; the job service queues it.
import { parseJobRequest } from '../src/jobs/parse.js';
import { refuse } from './format.js';
import { submitFor, submittedReply } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

export async function imagine(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { requester } = req;
  const member = await ctx.settings.get(requester.platform, requester.userId);
  const input: { text?: string; options?: Record<string, string | number | boolean> } = {};
  if (req.text !== undefined) input.text = req.text;
  if (req.options !== undefined) input.options = req.options;
  const parsed = parseJobRequest(input, { config: ctx.config, models: ctx.models(), member });
  if (!parsed.ok) return refuse(parsed.error);
  const notice = ctx.chatNotice?.pending(req.target);
  const notes = notice ? [...parsed.notes, `Note: ${notice}.`] : parsed.notes;
  const outcome = await submitFor(req, ctx, 'imagine', parsed.spec, notes);
  if (notice && outcome.ok) ctx.chatNotice?.markTold(req.target);
  return submittedReply(outcome, '', notes);
}
