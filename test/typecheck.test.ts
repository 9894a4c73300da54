// tsx and vitest strip types without checking them; this keeps `npm test` honest about strict TypeScript.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('TypeScript', () => {
  it('the whole project typechecks in strict mode', async () => {
    const result = await run(process.execPath, ['node_modules/typescript/bin/tsc', '--noEmit', '-p', 'tsconfig.json'], {
      maxBuffer: 16 * 1024 * 1024,
    }).then(
      () => '',
      (err: { stdout?: string }) => err.stdout ?? String(err),
    );
    expect(result).toBe('');
  }, 240_000);
});
