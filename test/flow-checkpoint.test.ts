// A club member draws with a checkpoint file an admin dropped into models/: the status message
// says the model is being prepared (first use only, with a percent), then loading, then the
// steps, and the picture arrives; the next job goes straight to drawing. A LoRA named in the
// prompt is merged for that job, named in the status and hashed in the info text. Real bot core, real
// engine worker, a tiny SD 1.x checkpoint.
import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import { statusText } from '../commands/status.js';
import type { JobEvent } from '../src/jobs/types.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyLora } from './fixtures/tiny-checkpoint.js';
import { createHarness, type Harness } from './helpers/harness.js';

const member = { platform: 'cli' as const, userId: 'u1', name: 'Ada', roles: [] };
const target = { platform: 'cli' as const, chatId: 'c1', handle: {} };

/** Runs /imagine and returns the status lines a member saw, in order, and the finished job. */
async function imagine(h: Harness, text: string): Promise<{ lines: string[]; jobId: string }> {
  const lines: string[] = [];
  let jobId = '';
  const finished = new Promise<void>((resolve, reject) => {
    const off = h.jobs.on((e: JobEvent) => {
      if (jobId !== '' && e.job.id !== jobId) return;
      lines.push(statusText(e));
      if (e.type === 'done') {
        off();
        resolve();
      } else if (e.type === 'failed') {
        off();
        reject(new Error(e.reason));
      }
    });
  });
  const reply = await runCommand({ command: 'imagine', requester: member, target, via: 'text', text }, h.commands);
  expect(reply.ok, reply.text).toBe(true);
  jobId = reply.queued!.job.id;
  await finished;
  return { lines, jobId };
}

describe('a checkpoint dropped into models/, through the bot', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness({
      prepareModels: async (dir) => {
        await writeTinyCheckpoint(path.join(dir, 'club-model.safetensors'));
        await cp(DEMO_TOKENIZER_DIR, path.join(dir, 'tokenizer'), { recursive: true });
        await mkdir(path.join(dir, 'loras'));
        await writeTinyLora(path.join(dir, 'loras', 'fox-style.safetensors'));
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it('is offered to members, says "preparing model … (first use only)" with a percent, then draws the picture', async () => {
    const help = await runCommand({ command: 'help', requester: member, target, via: 'text', text: '' }, h.commands);
    expect(help.text).toContain('• club-model (SD 1.x, 512×512, fp32, checkpoint)\n  LoRAs: fox-style');

    const first = await imagine(h, 'a fox in the snow --model club-model --size 64x64 --n 1 --steps 2 --seed 5');
    const preparing = first.lines.filter((l) => l.startsWith('Preparing model club-model (first use only)…'));
    expect(preparing.length).toBeGreaterThan(1);
    expect(preparing.at(-1)).toBe('Preparing model club-model (first use only)… 100%');
    const order = ['Preparing model', 'Loading model club-model…', 'Drawing… step 1/2', 'Done'].map((p) => first.lines.findIndex((l) => l.startsWith(p)));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect(order).toEqual([...order].sort((a, b) => a - b));

    const job = await h.jobs.get(first.jobId);
    const png = await sharp(h.jobs.filePath(job!.result!.images[0]!.file)).metadata();
    expect([png.width, png.height]).toEqual([64, 64]);

    const second = await imagine(h, 'a fox in the snow --model club-model --size 64x64 --n 1 --steps 2 --seed 6');
    expect(second.lines.some((l) => l.startsWith('Preparing') || l.startsWith('Loading'))).toBe(false);
  });

  it('draws with a LoRA named in the prompt: the status names it, the info text carries its hash', async () => {
    const { lines, jobId } = await imagine(h, 'a fox in the snow <lora:fox-style:0.8> --model club-model --size 64x64 --n 1 --steps 2 --seed 5');
    expect(lines.some((l) => /^Preparing model club-model with LoRA fox-style \(first use only\)… \d+%$/.test(l))).toBe(true);
    const job = await h.jobs.get(jobId);
    const png = await sharp(h.jobs.filePath(job!.result!.images[0]!.file)).metadata();
    const params = png.comments?.find((c) => c.keyword === 'parameters')?.text ?? '';
    expect(params).toContain('<lora:fox-style:0.8>');
    expect(params).toMatch(/Lora hashes: "fox-style: [0-9a-f]{12}"/);
  });
});
