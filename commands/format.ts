// Small text helpers shared by the commands: shortening, durations, file names, and the
// copy-paste command that reproduces a picture.
import type { Job, JobImage, JobSpec, Platform } from '../src/jobs/types.js';
import type { CommandReply } from './types.js';

/** Cuts at a word boundary when one is near, and marks the cut with an ellipsis. */
export function shorten(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  if (flat.length <= max) return flat;
  const cut = flat.slice(0, Math.max(1, max - 1));
  const space = cut.lastIndexOf(' ');
  return `${space > max * 0.6 ? cut.slice(0, space) : cut}…`;
}

/** "12.3 s" below a minute, "2 min 5 s" above. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const min = Math.floor(s / 60);
  const rest = Math.round(s - min * 60);
  return rest ? `${min} min ${rest} s` : `${min} min`;
}

/**
 * An estimate, rounded so it does not pretend to be precise. `approximate`: no job of the model
 * has finished yet, so the figure is a first estimate and says so.
 */
export function formatEta(seconds: number, approximate = false): string {
  const mark = approximate ? ', first estimate' : '';
  if (!Number.isFinite(seconds) || seconds < 1) return approximate ? 'in a moment (first estimate)' : 'any moment now';
  if (seconds < 10) return `about ${Math.round(seconds)} s${mark}`;
  if (seconds < 60) return `about ${Math.round(seconds / 5) * 5} s${mark}`;
  if (seconds < 3600) return `about ${Math.round(seconds / 60)} min${mark}`;
  return `about ${(seconds / 3600).toFixed(1)} h${mark}`;
}

/** `a-red-fox-in-the-1234.png`: readable and safe on every platform. */
export function pictureFileName(prompt: string, seed: number): string {
  const slug = prompt
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  return `${slug || 'picture'}-${seed}.png`;
}

export function refuse(text: string): CommandReply {
  return { ok: false, visibility: 'private', text };
}

/** The spec that draws exactly one picture of a job (image i uses seed + i, or variation seed + i). */
export function pictureSpec(job: Job, index: number, image: JobImage | undefined): JobSpec {
  const spec = job.spec;
  const variation = spec.variation
    ? { seed: (spec.variation.seed + index) >>> 0, strength: spec.variation.strength }
    : undefined;
  // With a variation every picture keeps the base seed (AUTOMATIC1111 behaviour).
  const seed = variation ? spec.seed : (image?.seed ?? (spec.seed + index) >>> 0);
  const { init: _init, variation: _variation, ...rest } = spec;
  return { ...rest, seed, count: 1, ...(variation ? { variation } : {}) };
}

function quote(value: string): string {
  return `"${value.replace(/"/g, "'")}"`;
}

/**
 * A command a member can paste to draw the same pictures again: every value explicit, so
 * their own /settings defaults cannot change the result. Discord shows slash options as
 * `prompt:`; elsewhere the prompt follows the command directly.
 */
export function reproduceCommand(spec: JobSpec, platform: Platform): string {
  const parts = [spec.prompt.replace(/\s+/g, ' ').trim()];
  // An empty negative is written as --no "" so the presser's own default negative stays out.
  const negative = spec.negativePrompt.replace(/\s+/g, ' ').trim();
  parts.push(`--no ${negative || '""'}`);
  parts.push(
    `--seed ${spec.seed}`,
    `--size ${spec.width}x${spec.height}`,
    `--steps ${spec.steps}`,
    `--cfg ${spec.guidance}`,
    `--sampler ${quote(spec.sampler)}`,
    `--model ${spec.model}`,
    `--n ${spec.count}`,
  );
  if (spec.variation) parts.push(`--variation ${spec.variation.seed}:${spec.variation.strength}`);
  return platform === 'discord' ? `/imagine prompt: ${parts.join(' ')}` : `/imagine ${parts.join(' ')}`;
}
