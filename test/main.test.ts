// `npm start` as a newcomer meets it: no token → the web studio on loopback; a bad config → one
// line naming the key, the value and what is allowed. Never a stack trace.
import { execFile, spawn } from 'node:child_process';
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

  it('without any platform token starts the web studio on loopback and prints its address', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: path.join(dir, 'data'), WEB_PORT: '0', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString('utf8');
          const found = /Web studio: (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
          if (found?.[1]) resolve(found[1]);
        });
        child.once('exit', (code) => reject(new Error(`exited with ${code}: ${out}`)));
      });
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      expect(out).toContain('DISCORD_TOKEN');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses to open the studio on a public address without a password or sign-in secret', async () => {
    const run = await start({ DATA_DIR: path.join(dir, 'data'), WEB_HOST: '0.0.0.0' });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('WEB_PASSWORD');
    expect(run.stderr).toContain('WEB_SECRET');
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
