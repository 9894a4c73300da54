// Starting one of the engine's own worker threads (the session worker, the noise drawer) the
// same way from compiled dist/ and from TypeScript sources.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * Starts `engine/<name>` as a thread. From compiled dist/ it is plain `<name>.js`. From
 * TypeScript sources (tsx, vitest) the thread first registers tsx's loader and then imports
 * `<name>.ts`: Node 20 does not apply `--import tsx` from a Worker's execArgv to its entry module.
 */
export function startEngineThread(name: string, workerData: unknown): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(`./${name}${fromSource ? '.ts' : '.js'}`, import.meta.url);
  if (!fromSource) return new Worker(entry, { workerData });
  const tsxApi = pathToFileURL(tsxEsmApiPath()).href;
  const bootstrap =
    `import(${JSON.stringify(tsxApi)})` +
    `.then((api) => { api.register(); return import(${JSON.stringify(entry.href)}); })`;
  // Loader flags of the parent (vitest's, tsx's) do not apply to an eval'd worker; drop them.
  const execArgv = process.execArgv.filter((arg, i, all) => !isLoaderFlag(arg) && !isLoaderFlag(all[i - 1] ?? ''));
  return new Worker(bootstrap, { eval: true, workerData, execArgv });
}

const LOADER_FLAGS = ['--import', '--loader', '--experimental-loader', '--require', '-r'];

function isLoaderFlag(arg: string): boolean {
  return LOADER_FLAGS.some((flag) => arg === flag || arg.startsWith(`${flag}=`));
}

function tsxEsmApiPath(): string {
  const require = createRequire(import.meta.url);
  // The package's "import" condition for tsx/esm/api; require.resolve only sees the CJS one.
  return require.resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs');
}
