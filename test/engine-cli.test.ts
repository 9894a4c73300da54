// The imagine CLI as a user runs it: a real process under tsx (so the engine worker starts from
// TypeScript sources too), a tiny fixture model, PNGs read back with sharp.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInfoText } from '../engine/infotext.js';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint, writeTinyLora } from './fixtures/tiny-checkpoint.js';
import { writeTinyModel } from './fixtures/tiny-models.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let root: string;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function imagine(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', path.join(repo, 'engine', 'cli.ts'), ...args],
      { cwd: repo, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'engine-cli-'));
  await writeTinyModel(path.join(root, 'models', 'tiny'), { generation: 'optimum-old', unet: 'smooth', vaeEncoder: true });
  await writeTinyModel(path.join(root, 'models', 'broken'), {
    generation: 'optimum-new',
    unet: 'smooth',
    omit: ['tokenizer/merges.txt'],
  });
});

afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('npm run imagine', () => {
  it('writes PNGs whose parameters chunk carries the info text; --n 2 numbers the files', async () => {
    const out = path.join(root, 'fox.png');
    const run = await imagine([
      '--model',
      path.join(root, 'models', 'tiny'),
      'a fox in the snow',
      '--seed',
      '7',
      '--steps',
      '3',
      '--sampler',
      'euler a',
      '--cfg',
      '6.5',
      '--negative',
      'blurry',
      '--n',
      '2',
      '-o',
      out,
    ]);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.code).toBe(0);
    // Both 64×64 pictures share each UNet call on the CPU: 3 calls for 3 steps.
    expect(run.stderr).toMatch(/step 3\/3/);
    for (const [i, seed] of [
      [1, 7],
      [2, 8],
    ] as const) {
      const file = path.join(root, `fox-${i}.png`);
      const meta = await sharp(await readFile(file)).metadata();
      expect(meta.width).toBe(64);
      expect(meta.format).toBe('png');
      const text = meta.comments?.find((c) => c.keyword === 'parameters')?.text ?? '';
      const info = parseInfoText(text);
      expect(info?.prompt).toBe('a fox in the snow');
      expect(info?.negativePrompt).toBe('blurry');
      expect(info?.params).toMatchObject({ Steps: '3', Sampler: 'Euler a', 'CFG scale': '6.5', Seed: String(seed), Model: 'tiny' });
    }
    expect(run.stdout).toMatch(/fox-2\.png \(seed 8\)/);

    // The same command from a model name under --models-dir, one picture: the same bytes as picture 1.
    const again = await imagine([
      '--models-dir',
      path.join(root, 'models'),
      '--model',
      'tiny',
      'a fox in the snow',
      '--seed=7',
      '--steps=3',
      '--sampler=Euler a',
      '--cfg=6.5',
      '--negative=blurry',
      '-q',
      '-o',
      path.join(root, 'single.png'),
    ]);
    expect(again.code).toBe(0);
    expect(again.stderr).toBe('');
    const a = await sharp(path.join(root, 'fox-1.png')).raw().toBuffer();
    const b = await sharp(path.join(root, 'single.png')).raw().toBuffer();
    expect(a.equals(b)).toBe(true);
  });

  it('img2img from a picture, with a variation seed', async () => {
    const init = path.join(root, 'init.png');
    await sharp({ create: { width: 100, height: 70, channels: 3, background: { r: 200, g: 40, b: 90 } } })
      .png()
      .toFile(init);
    const out = path.join(root, 'var.png');
    const run = await imagine([
      '-m',
      path.join(root, 'models', 'tiny'),
      'a cat',
      '--init',
      init,
      '--strength',
      '0.5',
      '--steps',
      '4',
      '--variation-seed',
      '11',
      '--variation-strength',
      '0.25',
      '-o',
      out,
    ]);
    expect(run.code).toBe(0);
    const meta = await sharp(out).metadata();
    // The init picture's size snapped down to multiples of 64.
    expect([meta.width, meta.height]).toEqual([64, 64]);
    const params = parseInfoText(meta.comments?.[0]?.text ?? '')?.params;
    expect(params).toMatchObject({ 'Denoising strength': '0.5', 'Variation seed': '11', 'Variation seed strength': '0.25' });
    expect(run.stderr).toMatch(/step 2\/2/);
  });

  it('--help prints usage and exits 0', async () => {
    const run = await imagine(['--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/Usage: npm run imagine/);
    expect(run.stdout).toMatch(/--variation-seed/);
  });

  const badInputs: [string, string[], RegExp][] = [
    ['an unknown flag', ['--colour', 'red', 'a cat'], /Unknown option '--colour'/],
    ['a missing prompt', ['--model', 'MODEL'], /no prompt given/],
    ['a bad number', ['--model', 'MODEL', 'a cat', '--steps', 'many'], /--steps "many" is not a whole number/],
    ['a bad size', ['--model', 'MODEL', 'a cat', '--size', '500x512'], /--size 500x512: each side must be a multiple of 64/],
    ['a missing model folder', ['--model', '/nonexistent/model', 'a cat'], /no such folder/],
    ['an unknown model name', ['--model', 'nope', '--models-dir', 'MODELS', 'a cat'], /model "nope" not found .*available: tiny/],
    ['a broken model folder', ['--model', 'BROKEN', 'a cat'], /tokenizer\/merges\.txt/],
    // parseArgs calls a value that starts with '-' "ambiguous" (with hint lines): it is a value here.
    ['a negative seed', ['--model', 'MODEL', 'a cat', '--seed', '-1'], /--seed "-1" is not a whole number from 0 to 4294967295/],
    ['a negative guidance', ['--model', 'MODEL', 'a cat', '--cfg', '-2.5'], /--cfg "-2\.5" is not a number from 0 to 100/],
    ['a value-taking flag with no value', ['--model', 'MODEL', 'a cat', '--steps'], /--steps/],
    ['an unknown sampler', ['--model', 'MODEL', 'a cat', '--sampler', 'heun'], /--sampler "heun" is unknown/],
    ['an init file that is not a picture', ['--model', 'MODEL', 'a cat', '--init', 'NOT_IMAGE'], /--init .*not a readable picture/],
    ['an unreadable --lora', ['--model', 'MODEL', 'a cat', '--lora', 'ink:heavy'], /--lora "ink:heavy" cannot be read: write --lora name:0\.8/],
  ];
  for (const [what, args, message] of badInputs) {
    it(`${what}: one clear line on stderr, exit code 2, no file`, async () => {
      const out = path.join(root, `bad-${what.replace(/\W+/g, '-')}.png`);
      const resolved = args.map((a) =>
        a === 'MODEL'
          ? path.join(root, 'models', 'tiny')
          : a === 'MODELS'
            ? path.join(root, 'models')
            : a === 'BROKEN'
              ? path.join(root, 'models', 'broken')
              : a === 'NOT_IMAGE'
                ? path.join(repo, 'package.json')
                : a,
      );
      const run = await imagine([...resolved, '-o', out]);
      expect(run.code).toBe(2);
      const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^imagine: /);
      expect(lines[0]).toMatch(message);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('an output path that cannot be written is refused before drawing: one line, exit code 2', async () => {
    const model = path.join(root, 'models', 'tiny');
    const notAFolder = path.join(root, 'plain-file.txt');
    await writeFile(notAFolder, 'x');
    for (const [output, message] of [
      [root, /--output .* is a folder; give a file name/],
      [path.join(notAFolder, 'out.png'), /--output .*plain-file\.txt is not a folder/],
    ] as const) {
      const run = await imagine(['--model', model, 'a cat', '--steps', '1', '-o', output]);
      expect(run.code).toBe(2);
      const lines = run.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines).toEqual([expect.stringMatching(message)]);
    }
  });
});

describe('npm run imagine with a checkpoint file', () => {
  let dir: string;
  beforeAll(async () => {
    dir = path.join(root, 'ck');
    await mkdir(path.join(dir, 'models', 'loras'), { recursive: true });
    await writeTinyCheckpoint(path.join(dir, 'models', 'club.safetensors'));
    await writeTinyLora(path.join(dir, 'models', 'loras', 'foxy.safetensors'));
    await writeFile(path.join(dir, 'models', 'old.ckpt'), Buffer.from([0x80, 0x02, 0x2e]));
  });

  it('--list shows each model with family, size, dtype and source, the LoRAs that fit, and refused files with the reason', async () => {
    const run = await imagine(['--list', '--models-dir', path.join(dir, 'models')]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines).toContain('club  SD 1.x  512²  fp32  checkpoint');
    expect(lines).toContain('    LoRAs: foxy');
    expect(lines.find((l) => l.startsWith('old: cannot be used:'))).toMatch(/pickle.*safetensors/);
  });

  it('prepares the checkpoint on first use with a progress line, then draws; the second run only loads', async () => {
    const args = [
      '--model',
      path.join(dir, 'models', 'club.safetensors'),
      'a fox',
      '--size',
      '64x64',
      '--steps',
      '2',
      '--seed',
      '1',
      '--cache-dir',
      path.join(dir, 'cache'),
      '--tokenizer',
      DEMO_TOKENIZER_DIR,
      '-o',
      path.join(dir, 'a.png'),
    ];
    const first = await imagine(args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/preparing model club \(first use only\) \[#+\] 100%/);
    expect(first.stderr).toMatch(/loading model club…/);
    const second = await imagine(args);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/preparing/);
    const png = await sharp(path.join(dir, 'a.png')).metadata();
    expect([png.width, png.height]).toEqual([64, 64]);
  });
});
