// img2img from an uploaded picture (the web studio's drop or paste): the same parsing, caps and
// queue as /imagine, plus the picture to start from and how far to move away from it.
import { access } from 'node:fs/promises';
import path from 'node:path';
import { parseJobRequest } from '../src/jobs/parse.js';
import { readPlainDecimal } from '../src/jobs/numbers.js';
import { refuse, shorten } from './format.js';
import { submitFor, submittedReply } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

/** How far the result may move away from the upload when the member does not say: A1111's usual middle. */
export const DEFAULT_STRENGTH = 0.6;
const MIN_STRENGTH = 0.05;
const UPLOAD_ID = /^[0-9a-z]{12}$/;

/** Where an upload with this id is kept, relative to the data directory. */
export function uploadFile(id: string): string {
  if (!UPLOAD_ID.test(id)) throw new Error(`uploadFile: not an upload id: ${JSON.stringify(id)}`);
  return `uploads/${id}.png`;
}

/** The form's strength field: absent or empty means the default; anything but a plain decimal is refused. */
function readStrength(raw: string | number | boolean | undefined): number | undefined {
  if (raw === undefined || raw === '') return DEFAULT_STRENGTH;
  if (typeof raw === 'number') return Number.isFinite(raw) ? raw : undefined;
  if (typeof raw !== 'string') return undefined;
  return readPlainDecimal(raw);
}

export async function img2img(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const { init, strength: rawStrength, ...options } = req.options ?? {};
  if (typeof init !== 'string' || !UPLOAD_ID.test(init)) return refuse('Drop or paste the picture to start from first.');
  const file = uploadFile(init);
  try {
    await access(path.join(ctx.config.dataDir, file));
  } catch {
    return refuse('The picture to start from is gone (it expired or the bot was moved); drop it again.');
  }
  const notes: string[] = [];
  let strength = readStrength(rawStrength);
  if (strength === undefined) {
    return refuse(`Strength must be a number from ${MIN_STRENGTH} to 1, not ${shorten(String(rawStrength), 20)}.`);
  }
  if (strength < MIN_STRENGTH || strength > 1) {
    const clamped = Math.min(1, Math.max(MIN_STRENGTH, strength));
    notes.push(`strength ${strength} → ${clamped} (from ${MIN_STRENGTH} to 1)`);
    strength = clamped;
  }
  const member = await ctx.settings.get(req.requester.platform, req.requester.userId);
  const input: { text?: string; options?: Record<string, string | number | boolean> } = { options };
  if (req.text !== undefined) input.text = req.text;
  const parsed = parseJobRequest(input, { config: ctx.config, models: ctx.models(), member });
  if (!parsed.ok) return refuse(parsed.error);
  const model = ctx.models().find((m) => m.name === parsed.spec.model);
  if (model && !model.hasVaeEncoder) {
    return refuse(`The model ${model.name} cannot start from a picture (its export has no vae_encoder/); pick another model.`);
  }
  const spec = { ...parsed.spec, init: { jobId: init, index: 0, strength, file } };
  const outcome = await submitFor(req, ctx, 'imagine', spec, [...parsed.notes, ...notes]);
  return submittedReply(outcome, `Starting from your picture at strength ${strength}. `, [...parsed.notes, ...notes]);
}
