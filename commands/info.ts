// ℹ️: a private answer with everything needed to draw a picture again.
import type { Job } from '../src/jobs/types.js';
import { pictureSpec, reproduceCommand } from './format.js';
import { jobForAction, pictureOf } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest } from './types.js';

/** `withPrompt` false when an info text follows, which repeats the prompts anyway (chat messages are short). */
function paramsLines(job: Job, seedText: string, withPrompt: boolean): string[] {
  const s = job.spec;
  const lines: string[] = [];
  if (withPrompt) lines.push(`Prompt: ${s.prompt}`);
  if (withPrompt && s.negativePrompt) lines.push(`Negative prompt: ${s.negativePrompt}`);
  lines.push(`${s.width}x${s.height} · ${s.steps} steps · CFG ${s.guidance} · ${s.sampler} · model ${s.model} · ${seedText}`);
  if (s.init?.file) {
    lines.push(`Made by img2img from an uploaded picture at strength ${s.init.strength}.`);
  } else if (s.init) {
    lines.push(`Made by img2img (2× upscale) of job ${s.init.jobId} picture ${s.init.index + 1} at strength ${s.init.strength}.`);
  }
  return lines;
}

export async function info(req: CommandRequest, ctx: CommandContext): Promise<CommandReply> {
  const found = await jobForAction(req, ctx, 'info');
  if (!found.ok) return found.reply;
  const job = found.value;
  const platform = req.requester.platform;
  const index = req.action?.index;
  const images = job.result?.images ?? [];

  // Without a picture index (the ℹ️ button): the whole job. A non-variation job's pictures are
  // seed, seed+1, …, so one command with --n reproduces them all.
  if (index === undefined && images.length !== 1) {
    const seeds = images.length ? images.map((i) => i.seed).join(', ') : String(job.spec.seed);
    const variation = job.spec.variation;
    const seedText = variation
      ? `seed ${job.spec.seed}, variation seeds from ${variation.seed} at ${variation.strength}`
      : `seeds ${seeds}`;
    const first = images[0];
    const lines = [`Job ${job.id} (${job.status}) by ${job.requester.name}`, ...paramsLines(job, seedText, !first)];
    if (first) lines.push('', 'AUTOMATIC1111 parameters of picture 1:', first.infoText);
    lines.push('', ...reproduceLines(job, reproduceCommand(job.spec, platform), 'all of these pictures'));
    return { ok: true, visibility: 'private', text: lines.join('\n') };
  }

  const picture = pictureOf(job, index);
  if (!picture.ok) return picture.reply;
  const { image, index: i } = picture.value;
  const spec = pictureSpec(job, i, image);
  const seedText = spec.variation
    ? `seed ${spec.seed}, variation seed ${spec.variation.seed} at ${spec.variation.strength}`
    : `seed ${spec.seed}`;
  const lines = [
    `Picture ${i + 1} of job ${job.id} by ${job.requester.name}`,
    ...paramsLines(job, seedText, false),
    '',
    'AUTOMATIC1111 parameters:',
    image.infoText,
    '',
    ...reproduceLines(job, reproduceCommand(spec, platform), 'this picture'),
  ];
  return { ok: true, visibility: 'private', text: lines.join('\n') };
}

function reproduceLines(job: Job, command: string, what: string): string[] {
  if (job.spec.init?.file) {
    return ['This started from a picture uploaded to the web studio; drop that picture there again to redraw it.'];
  }
  if (job.spec.init) {
    return [
      `This is an img2img pass over job ${job.spec.init.jobId} picture ${job.spec.init.index + 1}; press U on that result to make it again.`,
    ];
  }
  return [`To draw ${what} again:`, command];
}
