// U buttons: the chosen picture alone at full size right away, plus a 2× hires pass
// (img2img of that picture at low strength) queued as a new job.
import type { Config } from '../src/config/schema.js';
import type { JobSpec } from '../src/jobs/types.js';
import { pictureFileName } from './format.js';
import { jobForAction, pictureOf, submitFor, submittedReply } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

const SNAP = 64;

export interface UpscaleSize {
  width: number;
  height: number;
  /** Set when the club's limits kept it below 2×. */
  clampNote?: string;
}

/** 2× in each direction, shrunk (keeping the ratio, multiples of 64) to the club's limits. */
export function upscaleSize(width: number, height: number, config: Config): UpscaleSize {
  const { maxPixels, maxSide } = config.limits;
  const w2 = width * 2;
  const h2 = height * 2;
  const k = Math.min(1, Math.sqrt(maxPixels / (w2 * h2)), maxSide / Math.max(w2, h2));
  const snap = (v: number) => Math.max(SNAP, Math.floor((v * k) / SNAP) * SNAP);
  const out = { width: snap(w2), height: snap(h2) };
  if (out.width === w2 && out.height === h2) return out;
  return {
    ...out,
    clampNote: `2× would be ${w2}x${h2}; this club allows at most ${maxPixels} pixels and ${maxSide} px a side, so the upscale is ${out.width}x${out.height}.`,
  };
}

export async function upscale(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const found = await jobForAction(req, ctx, 'upscale');
  if (!found.ok) return found.reply;
  const job = found.value;
  const picture = pictureOf(job, req.action?.index);
  if (!picture.ok) return picture.reply;
  const { image, index } = picture.value;
  const files = [{ path: ctx.jobs.filePath(image.file), name: pictureFileName(job.spec.prompt, image.seed) }];
  const lead = `Picture ${index + 1} at full size (${image.width}x${image.height}, seed ${image.seed}).`;
  // The picture itself is always delivered; only the hires pass can be refused.
  const pictureOnly = (why: string): CommandReply => ({ ok: true, visibility: 'public', text: `${lead}\n${why}`, files });

  const model = ctx.models().find((m) => m.name === job.spec.model);
  if (!model) return pictureOnly(`No 2× upscale: the model ${job.spec.model} is no longer available.`);
  if (!model.hasVaeEncoder) {
    return pictureOnly(`No 2× upscale: the model ${model.name} has no VAE encoder, which img2img needs.`);
  }
  const size = upscaleSize(image.width, image.height, ctx.config);
  if (size.width * size.height <= image.width * image.height) {
    return pictureOnly("No 2× upscale: this picture is already at this club's size limit.");
  }

  const { variation, init: _init, ...base } = job.spec;
  const spec: JobSpec = {
    ...base,
    width: size.width,
    height: size.height,
    count: 1,
    // Keep this picture's noise so the pass reads as the same picture, only sharper.
    seed: variation ? job.spec.seed : image.seed,
    ...(variation ? { variation: { seed: (variation.seed + index) >>> 0, strength: variation.strength } } : {}),
    init: { jobId: job.id, index, strength: ctx.config.defaults.upscaleStrength },
  };
  const notes = size.clampNote ? [size.clampNote] : [];
  const outcome = await submitFor(req, ctx, 'upscale', spec, notes, job);
  if (!outcome.ok) return pictureOnly(`The 2× upscale was not queued: ${outcome.reason}`);
  const queued = submittedReply(outcome, `${lead}\n2× upscale to ${size.width}x${size.height}: `, notes);
  return { ...queued, files };
}
