// A real redis-server for one test file, on a free loopback port, with AOF in its own folder so a
// restart keeps what was written. Tests skip (with a message) where the binary is absent.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './free-port.js';

export const HAVE_REDIS = spawnSync('redis-server', ['--version']).status === 0;

export interface TestRedis {
  url: string;
  port: number;
  /** SIGKILL (crash) or SIGTERM, then start again on the same AOF. */
  restart(signal?: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
  /** Stopped, not started again (the "unreachable" case); restart() brings it back. */
  kill(): Promise<void>;
}

export async function startRedis(extra: string[] = []): Promise<TestRedis> {
  const port = await freePort();
  const dir = await mkdtemp(path.join(tmpdir(), 'redis-'));
  let child: ChildProcess | undefined;
  const launch = async () => {
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--maxmemory-policy', 'noeviction', ...extra],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child = proc;
    await new Promise<void>((resolve, reject) => {
      proc.once('error', reject);
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
      let seen = '';
      proc.stdout?.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes('Ready to accept connections')) resolve();
      });
    });
  };
  const kill = async (signal: NodeJS.Signals = 'SIGKILL') => {
    const proc = child;
    if (!proc || proc.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
    child = undefined;
  };
  await launch();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    restart: async (signal = 'SIGKILL') => {
      await kill(signal);
      await launch();
    },
    kill: () => kill('SIGKILL'),
    stop: async () => {
      await kill('SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
}
