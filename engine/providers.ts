// Execution providers: create a session on the first configured provider that works, falling
// back down the list (CPU always last) with one warning per provider per process that says how
// to install the missing piece.
//
// GPU providers are probed once per process in a child process first: with CUDA libraries
// present but no visible GPU, onnxruntime has been seen to segfault instead of throwing
// (microsoft/onnxruntime#24652), and a segfault in the bot's own process would take it down.
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { planOptimizedSession, type CachePlan } from './optimized-cache.js';
import type { EngineLog, ExecutionProviderName, MemoryMode } from './types.js';

export const INSTALL_HINTS: Record<Exclude<ExecutionProviderName, 'cpu'>, string> = {
  cuda:
    'the CUDA provider needs the CUDA 12 runtime and cuDNN 9 libraries (libcudart.so.12, libcublas.so.12, libcudnn.so.9) ' +
    "on the library path and onnxruntime-node's CUDA binaries: allow onnxruntime-node's install script and run " +
    '`npm rebuild onnxruntime-node --onnxruntime-node-install=cuda12` (or set ONNXRUNTIME_NODE_INSTALL=cuda12 before npm install), ' +
    'or copy libonnxruntime_providers_{cuda,shared}.so from the Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 package into ' +
    'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/',
  webgpu:
    'the WebGPU provider (bundled with onnxruntime-node on Linux x64, Windows and macOS) needs a Vulkan loader and GPU driver: ' +
    'install libvulkan1 and your GPU vendor’s Vulkan driver (NVIDIA: the driver’s Vulkan ICD; AMD/Intel: mesa-vulkan-drivers), ' +
    'then check that `vulkaninfo --summary` lists the GPU',
};

/** A two-node model (y = x + 1) for the probe: small enough to embed, real enough to run. */
const PROBE_MODEL_BASE64 =
  'CAgSBXByb2JlOl4KIAoBeAoHY29uc3RfMRIBeRoKQWRkX25vZGVfMiIDQWRkEgVwcm9iZSoREAFCB2NvbnN0XzFKBAAAgD9aDwoBeBIKCggIARIECgIIAWIPCgF5EgoKCAgBEgQKAggBQgQKABAR';
const PROBE_TIMEOUT_MS = 120_000;

interface ProbeResult {
  ok: boolean;
  reason?: string;
}

const probes = new Map<ExecutionProviderName, Promise<ProbeResult>>();
const warned = new Set<ExecutionProviderName>();

function probeScript(provider: ExecutionProviderName): string {
  const require = createRequire(import.meta.url);
  const ortUrl = pathToFileURL(require.resolve('onnxruntime-node')).href;
  return [
    `try {`,
    `  const ort = await import(${JSON.stringify(ortUrl)});`,
    `  const s = await ort.InferenceSession.create(Buffer.from(${JSON.stringify(PROBE_MODEL_BASE64)}, 'base64'), { executionProviders: [${JSON.stringify(provider)}] });`,
    `  const r = await s.run({ x: new ort.Tensor('float32', Float32Array.of(1), [1]) });`,
    `  if (r.y.data[0] !== 2) throw new Error('the probe model returned a wrong result');`,
    `  process.exit(0);`,
    `} catch (e) {`,
    `  process.stderr.write('${PROBE_MARK}' + String(e && e.message ? e.message : e).split('\\n')[0] + '\\n');`,
    `  process.exit(2);`,
    `}`,
  ].join('\n');
}

const PROBE_MARK = 'PROBE_ERROR: ';

/** The probe's own error line, or else the last line the child wrote. */
function probeReason(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const marked = lines.find((l) => l.startsWith(PROBE_MARK));
  return (marked ? marked.slice(PROBE_MARK.length) : (lines[lines.length - 1] ?? '')).slice(0, 400);
}

/** Runs a one-node session on `provider` in a child process (once per process and provider). */
export function probeProvider(provider: ExecutionProviderName): Promise<ProbeResult> {
  if (provider === 'cpu') return Promise.resolve({ ok: true });
  let probe = probes.get(provider);
  if (!probe) {
    probe = new Promise<ProbeResult>((resolve) => {
      execFile(
        process.execPath,
        ['--input-type=module', '-e', probeScript(provider)],
        { timeout: PROBE_TIMEOUT_MS },
        (err, _stdout, stderr) => {
          if (!err) return resolve({ ok: true });
          const signal = (err as { signal?: string | null }).signal;
          const detail = probeReason(stderr) || err.message;
          resolve({ ok: false, reason: signal ? `the probe process died with ${signal}${detail ? ` (${detail})` : ''}` : detail });
        },
      );
    });
    probes.set(provider, probe);
  }
  return probe;
}

function sessionOptions(provider: ExecutionProviderName, threads: number | undefined, memory: MemoryMode): ort.InferenceSession.SessionOptions {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: provider === 'cuda' ? [{ name: 'cuda', deviceId: 0 }] : [provider],
    graphOptimizationLevel: 'all',
    // Keep onnxruntime's own console logging to errors; fallbacks are reported through `log`.
    logSeverityLevel: 3,
    ...(memory === 'low' ? LOW_MEMORY_OPTIONS : {}),
  };
  if (threads !== undefined && threads > 0) options.intraOpNumThreads = threads;
  return options;
}

/**
 * Low memory mode's session options (all in onnxruntime-common 1.30's SessionOptions typings).
 * The CPU arena keeps every activation buffer a run ever allocated, and the memory pattern plans
 * one block for all of them: off, a buffer is returned to the allocator as soon as its last reader
 * ran, so the peak is the largest live set instead of the sum (bench/engine.ts --fullsize).
 */
const LOW_MEMORY_OPTIONS: ort.InferenceSession.SessionOptions = {
  enableCpuMemArena: false,
  enableMemPattern: false,
};

/** The configured order with CPU appended as the last resort; duplicates dropped. */
export function providerOrder(configured: readonly ExecutionProviderName[]): ExecutionProviderName[] {
  const order: ExecutionProviderName[] = [];
  for (const p of [...configured, 'cpu' as const]) if (!order.includes(p)) order.push(p);
  return order;
}

function warnOnce(log: EngineLog | undefined, provider: ExecutionProviderName, reason: string, next: ExecutionProviderName): void {
  if (warned.has(provider) || provider === 'cpu') return;
  warned.add(provider);
  const hint = INSTALL_HINTS[provider];
  log?.warn({ provider, fallback: next, reason }, `${provider} execution provider is unavailable, falling back to ${next}: ${reason}. To use it: ${hint}`);
}

export interface CreatedSession {
  session: ort.InferenceSession;
  provider: ExecutionProviderName;
}

/**
 * Creates a session for `file` (loaded by path so external data beside it resolves) on the first
 * provider in `providers` (then CPU) that works. Throws the CPU error when even CPU fails —
 * that is a problem with the model file, not the machine.
 */
export async function createSession(
  file: string,
  providers: readonly ExecutionProviderName[],
  opts: { threads?: number; log?: EngineLog; memory?: MemoryMode; optimizedCacheDir?: string } = {},
): Promise<CreatedSession> {
  const order = providerOrder(providers);
  for (let i = 0; i < order.length; i++) {
    const provider = order[i]!;
    const next = order[i + 1] ?? 'cpu';
    if (provider !== 'cpu') {
      const probe = await probeProvider(provider);
      if (!probe.ok) {
        warnOnce(opts.log, provider, probe.reason ?? 'it failed to start', next);
        continue;
      }
    }
    try {
      const options = sessionOptions(provider, opts.threads, opts.memory ?? 'normal');
      const session = opts.optimizedCacheDir
        ? await createThroughCache(opts.optimizedCacheDir, file, provider, options, opts.log)
        : await ort.InferenceSession.create(file, options);
      return { session, provider };
    } catch (err) {
      if (provider === 'cpu') throw err;
      warnOnce(opts.log, provider, (err as Error).message.split('\n')[0] ?? 'session creation failed', next);
    }
  }
  throw new Error('no execution provider could load the model'); // unreachable: CPU is always tried
}

/**
 * Creates the session from the cached optimised graph when there is one (optimisation off: it was
 * done), else from `file`, writing the optimised graph for next time. A cache that cannot be read
 * or written only costs the optimisation time; the session is created either way.
 */
async function createThroughCache(
  cacheDir: string,
  file: string,
  provider: ExecutionProviderName,
  options: ort.InferenceSession.SessionOptions,
  log: EngineLog | undefined,
  again = false,
): Promise<ort.InferenceSession> {
  let plan: CachePlan;
  try {
    plan = await planOptimizedSession(cacheDir, file, options, { provider, graphOptimizationLevel: String(options.graphOptimizationLevel) });
  } catch (err) {
    log?.warn({ file, cacheDir, err: describe(err) }, 'the optimised-model cache cannot be used; optimising at load');
    return ort.InferenceSession.create(file, options);
  }
  if (plan.kind === 'hit') {
    if (again) return ort.InferenceSession.create(file, options);
    try {
      return await ort.InferenceSession.create(plan.graph, { ...options, graphOptimizationLevel: 'disabled' });
    } catch (err) {
      log?.warn({ file, cached: plan.graph, err: describe(err) }, 'a cached optimised model did not load; optimising again');
      await rm(path.dirname(plan.graph), { recursive: true, force: true }).catch(() => undefined);
      return createThroughCache(cacheDir, file, provider, options, log, true);
    }
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(file, plan.options);
  } catch (err) {
    await plan.abandon().catch(() => undefined);
    throw err;
  }
  await plan.commit().catch(async (err: unknown) => {
    log?.warn({ file, cacheDir, err: describe(err) }, 'could not store the optimised model; the next start optimises again');
    await plan.abandon().catch(() => undefined);
  });
  return session;
}

function describe(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!.slice(0, 300);
}

/** Forget probe results and warnings (tests only). */
export function resetProviderStateForTests(): void {
  probes.clear();
  warned.clear();
}
