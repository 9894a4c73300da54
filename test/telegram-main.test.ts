// The bot as a supervisor runs it (node on src/main.ts): when Telegram stops accepting the token
// while it runs, it exits non-zero with one clear line, so "restart on failure" notices.
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeBotApi } from './fakes/telegram/server.js';

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe('npm start with Telegram', () => {
  it('exits non-zero with one clear line when the token is revoked while polling (401)', async () => {
    const fake = await FakeBotApi.start();
    const root = await mkdtemp(path.join(tmpdir(), 'tg-main-'));
    cleanup = async () => {
      await fake.close();
      await rm(root, { recursive: true, force: true });
    };
    const configFile = path.join(root, 'local.jsonc');
    await writeFile(
      configFile,
      JSON.stringify({
        dataDir: path.join(root, 'data'),
        storage: { url: `sqlite://${path.join(root, 'data', 'bot.sqlite')}` },
        models: { dir: path.join(root, 'models') },
        engine: { warmup: false },
        telegram: { apiRoot: fake.apiRoot },
      }),
    );
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, BOT_CONFIG: configFile, TELEGRAM_TOKEN: fake.token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await fake.pollWaiting(0, 45_000);
    fake.revokeToken();
    const code = await exited;
    clearTimeout(killer);
    expect(code).toBe(1);
    const lines = output.split('\n').filter((l) => l.includes('no longer accepts the bot token'));
    expect(lines).toHaveLength(1);
    expect(output).not.toContain(fake.token);
  }, 90_000);
});
