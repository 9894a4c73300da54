// ℹ️: a private answer with everything needed to draw a picture again. The info text and the
// command are verbatim parts (ReplyPart code), so adapters draw them as code blocks and `*`, `_`
// or `~~` in a prompt copy as typed instead of turning into formatting.
import type { Job } from '../src/jobs/types.js';
import { pictureSpec, reproduceCommand } from './format.js';
import { jobForAction, pictureOf } from './lookup.js';
import type { CommandContext, CommandReply, CommandRequest, ReplyPart } from './types.js';

/** Prose lines and verbatim blocks in reading order; `text` is the same content as plain lines. */
class InfoReply {
  private readonly parts: ReplyPart[] = [];
  private readonly plain: string[] = [];
  private prose: string[] = [];

  line(...lines: string[]): this {
    this.prose.push(...lines);
    this.plain.push(...lines);
    return this;
  }

  code(text: string): this {
    this.flush();
    this.parts.push({ text, code: true });
    this.plain.push(text);
    return this;
  }

  reply(): CommandReply {
    this.flush();
    return { ok: true, visibility: 'private', text: this.plain.join('\n'), parts: this.parts };
  }

  private flush(): void {
    // Blank lines at a block's edge are spacing; code blocks bring their own.
    while (this.prose[0] === '') this.prose.shift();
    while (this.prose[this.prose.length - 1] === '') this.prose.pop();
    if (this.prose.length) this.parts.push({ text: this.prose.join('\n') });
    this.prose = [];
  }
}

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
    const out = new InfoReply().line(`Job ${job.id} (${job.status}) by ${job.requester.name}`, ...paramsLines(job, seedText, !first));
    if (first) out.line('', 'AUTOMATIC1111 parameters of picture 1:').code(first.infoText);
    reproduce(out, job, reproduceCommand(job.spec, platform), 'all of these pictures');
    return out.reply();
  }

  const picture = pictureOf(job, index);
  if (!picture.ok) return picture.reply;
  const { image, index: i } = picture.value;
  const spec = pictureSpec(job, i, image);
  const seedText = spec.variation
    ? `seed ${spec.seed}, variation seed ${spec.variation.seed} at ${spec.variation.strength}`
    : `seed ${spec.seed}`;
  const out = new InfoReply()
    .line(`Picture ${i + 1} of job ${job.id} by ${job.requester.name}`, ...paramsLines(job, seedText, false))
    .line('', 'AUTOMATIC1111 parameters:')
    .code(image.infoText);
  reproduce(out, job, reproduceCommand(spec, platform), 'this picture');
  return out.reply();
}

function reproduce(out: InfoReply, job: Job, command: string, what: string): void {
  if (job.spec.init?.file) {
    out.line('', 'This started from a picture uploaded to the web studio; drop that picture there again to redraw it.');
    return;
  }
  if (job.spec.init) {
    out.line(
      '',
      `This is an img2img pass over job ${job.spec.init.jobId} picture ${job.spec.init.index + 1}; press U on that result to make it again.`,
    );
    return;
  }
  out.line('', `To draw ${what} again:`).code(command);
}
