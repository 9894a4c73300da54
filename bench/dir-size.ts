import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** Bytes under `dir`, every file counted (hard links counted each time). */
export async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? await du(p) : (await stat(p)).size;
  }
  return total;
}
