// Uploaded pictures (img2img starts from them) live in <dataDir>/uploads and are swept after
// retention.days like results; retention 0 keeps them, as it keeps results.
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';

const DAY_MS = 86_400_000;

/** Deletes uploads older than retention.days; returns how many. */
export async function sweepUploads(config: Config, log: Logger, now = Date.now()): Promise<number> {
  if (config.retention.days <= 0) return 0;
  const dir = path.join(config.dataDir, 'uploads');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0; // nothing uploaded yet
  }
  let removed = 0;
  for (const name of names) {
    if (!/^[0-9a-z]{12}\.png$/.test(name)) continue;
    const file = path.join(dir, name);
    try {
      if (now - (await stat(file)).mtimeMs > config.retention.days * DAY_MS) {
        await rm(file, { force: true });
        removed++;
      }
    } catch (err) {
      log.warn({ err, file: name }, 'web: an old upload could not be removed');
    }
  }
  if (removed > 0) log.info({ removed }, 'web: old uploads removed');
  return removed;
}

/** Sweeps now and then every retention.sweepMinutes; the returned function stops it. */
export function startUploadSweeps(config: Config, log: Logger): () => void {
  const run = () => void sweepUploads(config, log).catch((err: unknown) => log.warn({ err }, 'web: upload sweep failed'));
  run();
  const timer = setInterval(run, config.retention.sweepMinutes * 60_000);
  timer.unref();
  return () => clearInterval(timer);
}
