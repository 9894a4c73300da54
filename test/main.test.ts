// `npm start` as a newcomer meets it: no token → which variables to set; a bad config → one
// line naming the key, the value and what is allowed. Never a stack trace.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function start(env: NodeJS.ProcessEnv): Promise<Run> {
  const clean: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, ...env };
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/main.ts'],
      { env: clean, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err && typeof err.code === 'number' ? err.code : err ? 1 : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe('npm start', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'imagine-main-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('without any platform token says exactly which variables to set and exits non-zero', async () => {
    const run = await start({ DATA_DIR: path.join(dir, 'data') });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('DISCORD_TOKEN');
    expect(run.stderr).toContain('TELEGRAM_TOKEN');
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });

  it('with a bad config value stops with one message naming the key, the value and what is allowed', async () => {
    const file = path.join(dir, 'bad.jsonc');
    await writeFile(file, '{ // a club override\n "limits": { "maxSteps": "fifty" } }\n');
    const run = await start({ BOT_CONFIG: file, TELEGRAM_TOKEN: '123456:ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi' });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('limits.maxSteps');
    expect(run.stderr).toContain('fifty');
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(run.stderr).not.toContain('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghi');
  });
});
