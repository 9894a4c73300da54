// Start-up configuration: defaults file ← local override file ← code overrides ← a few
// environment variables, validated once with zod and frozen. The only module that reads
// process.env (DESIGN rule); everything else receives the Config.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { editDistance } from '../../engine/near-names.js';
import { parseAspect } from '../jobs/aspect.js';
import { type Config, ConfigSchema, type FileConfig, type Secrets } from './schema.js';
import { JsoncError, parseJsonc } from './jsonc.js';

/** Thrown for any configuration problem; its message is one line meant for the operator. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Local override file; else env BOT_CONFIG; else config/local.jsonc if it exists. */
  file?: string;
  overrides?: DeepPartial<FileConfig>;
  /** Directory relative paths are resolved against (default: process.cwd()). */
  cwd?: string;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
type PathKey = string | number;

/** Environment variables that may override one config key each (operational knobs only). */
const ENV_KEYS: readonly { env: string; path: readonly string[] }[] = [
  { env: 'LOG_LEVEL', path: ['logLevel'] },
  { env: 'DATA_DIR', path: ['dataDir'] },
  { env: 'MODELS_DIR', path: ['models', 'dir'] },
  { env: 'STORAGE_URL', path: ['storage', 'url'] },
  { env: 'WEB_HOST', path: ['web', 'host'] },
  { env: 'WEB_PORT', path: ['web', 'port'] },
  { env: 'QUEUE_BACKEND', path: ['queue', 'backend'] },
  { env: 'QUEUE_REDIS_URL', path: ['queue', 'redis', 'url'] },
];

const SECRET_ENV: Record<keyof Secrets, string> = {
  discordToken: 'DISCORD_TOKEN',
  telegramToken: 'TELEGRAM_TOKEN',
  webPassword: 'WEB_PASSWORD',
  webSecret: 'WEB_SECRET',
};

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const defaults = readDefaults();

  const origins = new Map<string, string>();
  let merged = defaults;

  const localFile = chooseLocalFile(opts.file, env, cwd);
  if (localFile) {
    const local = readConfigFile(localFile.path, localFile.label);
    rejectSecretsInFile(local, localFile.label);
    recordOrigins(local, [], `in ${localFile.label}`, origins);
    merged = deepMerge(merged, local);
  }
  if (opts.overrides) merged = deepMerge(merged, toJson(opts.overrides));

  const explicitStorage = storageSetExplicitly(defaults, merged, env);
  for (const { env: name, path: keyPath } of ENV_KEYS) {
    const value = env[name];
    if (value === undefined || value.trim() === '') continue;
    merged = setAt(merged, keyPath, value.trim());
    origins.set(keyPath.join('.'), `from the environment variable ${name}`);
  }

  return finish(merged, secretsFrom(env), cwd, explicitStorage, origins);
}

/** The documented defaults merged with `overrides`, validated; no files and no environment. For tests. */
export function defaultConfig(overrides?: DeepPartial<FileConfig> & { secrets?: Secrets }, cwd = process.cwd()): Config {
  const defaults = readDefaults();
  const { secrets, ...fileOverrides } = overrides ?? {};
  const merged = deepMerge(defaults, toJson(fileOverrides));
  return finish(merged, { ...secrets }, cwd, storageSetExplicitly(defaults, merged, {}), new Map());
}

// ---------------------------------------------------------------------------------------------

function finish(
  merged: JsonObject,
  secrets: Secrets,
  cwd: string,
  explicitStorage: boolean,
  origins: Map<string, string>,
): Config {
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(describeIssue(pickIssue(parsed.error.issues), merged, origins));
  const file = parsed.data;
  crossCheck(file, origins);

  const dataDir = path.resolve(cwd, file.dataDir);
  const resolved: FileConfig = {
    ...file,
    dataDir,
    models: { ...file.models, dir: path.resolve(cwd, file.models.dir) },
    // The default SQLite file lives in the data directory, so pointing dataDir elsewhere (a
    // deployment, a test's temp dir) moves the database with it.
    storage: explicitStorage ? file.storage : { url: `sqlite://${path.join(dataDir, 'bot.sqlite')}` },
  };
  const secretsOut: Secrets = {};
  if (secrets.discordToken) secretsOut.discordToken = secrets.discordToken;
  if (secrets.telegramToken) secretsOut.telegramToken = secrets.telegramToken;
  if (secrets.webPassword) secretsOut.webPassword = secrets.webPassword;
  if (secrets.webSecret) secretsOut.webSecret = secrets.webSecret;
  return deepFreeze({ ...resolved, secrets: secretsOut });
}

function secretsFrom(env: NodeJS.ProcessEnv): Secrets {
  const secrets: Secrets = {};
  for (const [key, name] of Object.entries(SECRET_ENV) as [keyof Secrets, string][]) {
    const value = env[name]?.trim();
    if (value) secrets[key] = value;
  }
  return secrets;
}

function storageSetExplicitly(defaults: JsonObject, merged: JsonObject, env: NodeJS.ProcessEnv): boolean {
  if (env.STORAGE_URL?.trim()) return true;
  return JSON.stringify(getAt(merged, ['storage', 'url'])) !== JSON.stringify(getAt(defaults, ['storage', 'url']));
}

function crossCheck(c: FileConfig, origins: Map<string, string>): void {
  const fail = (key: string, value: unknown, expected: string): never => {
    throw new ConfigError(`config: ${key} = ${show(value)} — expected ${expected}${originSuffix(key.split('.'), origins)}`);
  };
  if (c.defaults.steps > c.limits.maxSteps)
    fail('defaults.steps', c.defaults.steps, `at most limits.maxSteps (${c.limits.maxSteps})`);
  if (c.defaults.images > c.limits.maxImagesPerJob)
    fail('defaults.images', c.defaults.images, `at most limits.maxImagesPerJob (${c.limits.maxImagesPerJob})`);
  if (c.defaults.guidance > c.limits.maxGuidance)
    fail('defaults.guidance', c.defaults.guidance, `at most limits.maxGuidance (${c.limits.maxGuidance})`);
  if (c.defaults.varySubtle >= c.defaults.varyStrong)
    fail('defaults.varySubtle', c.defaults.varySubtle, `less than defaults.varyStrong (${c.defaults.varyStrong})`);
  const aspect = parseAspect(c.defaults.aspect);
  if (!aspect.ok) fail('defaults.aspect', c.defaults.aspect, 'a ratio such as 1:1, 3:2 or 16:9, no more extreme than 4:1');
  if (c.limits.maxSide * c.limits.maxSide < 64 * 64 || c.limits.maxPixels < 64 * 64)
    fail('limits.maxPixels', c.limits.maxPixels, 'room for at least one 64×64 picture');
  const tierNames = new Set<string>();
  c.queue.tiers.forEach((tier, i) => {
    if (tierNames.has(tier.name)) fail(`queue.tiers[${i}].name`, tier.name, 'a name no other tier uses');
    tierNames.add(tier.name);
  });
}

// ---- files ------------------------------------------------------------------------------------

let cachedDefaults: JsonObject | undefined;

function readDefaults(): JsonObject {
  cachedDefaults ??= readConfigFile(findDefaultsFile(), 'config/default.jsonc');
  // A copy, so no caller's merge can touch the cache.
  return structuredClone(cachedDefaults);
}

/** config/default.jsonc next to the sources, or above dist/ when running the build output. */
function findDefaultsFile(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let up = 0; up < 5; up++) {
    const candidate = path.join(dir, 'config', 'default.jsonc');
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new ConfigError('config: cannot find config/default.jsonc next to the program (was it deleted?)');
}

function chooseLocalFile(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
  cwd: string,
): { path: string; label: string } | undefined {
  const named = file ?? (env.BOT_CONFIG?.trim() || undefined);
  if (named) {
    const full = path.resolve(cwd, named);
    if (!existsSync(full)) {
      const via = file ? '' : ' (named by BOT_CONFIG)';
      throw new ConfigError(`config: the file ${named}${via} does not exist`);
    }
    return { path: full, label: named };
  }
  const conventional = path.join(cwd, 'config', 'local.jsonc');
  return existsSync(conventional) ? { path: conventional, label: 'config/local.jsonc' } : undefined;
}

function readConfigFile(file: string, label: string): JsonObject {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`config: cannot read ${label} (${code})`);
  }
  let value: unknown;
  try {
    value = parseJsonc(text);
  } catch (err) {
    if (err instanceof JsoncError) throw new ConfigError(`config: ${label} line ${err.line}, column ${err.column}: ${err.reason}`);
    throw new ConfigError(`config: ${label} is not valid JSONC`);
  }
  if (!isObject(value)) throw new ConfigError(`config: ${label} must hold one { … } object at the top`);
  return value;
}

/** Tokens in a file end up in backups and commits; refuse them and say where they belong. */
function rejectSecretsInFile(value: Json, label: string, at: PathKey[] = []): void {
  if (isObject(value)) {
    for (const [key, child] of Object.entries(value)) {
      const here = [...at, key];
      if (/token|secret|password|api[-_]?key/i.test(key)) {
        throw new ConfigError(
          `config: ${formatPath(here)} in ${label} — tokens do not belong in config files; ` +
            `put it in the environment (${secretEnvHint(here)}) and remove it from the file`,
        );
      }
      rejectSecretsInFile(child, label, here);
    }
  } else if (Array.isArray(value)) {
    value.forEach((child, i) => rejectSecretsInFile(child, label, [...at, i]));
  } else if (typeof value === 'string' && looksLikeToken(value)) {
    throw new ConfigError(
      `config: ${formatPath(at)} in ${label} looks like a bot token — tokens do not belong in config files; ` +
        `put it in the environment (DISCORD_TOKEN or TELEGRAM_TOKEN) and remove it from the file`,
    );
  }
}

function secretEnvHint(at: PathKey[]): string {
  const joined = at.join('.').toLowerCase();
  if (joined.includes('telegram')) return 'TELEGRAM_TOKEN';
  if (joined.includes('discord')) return 'DISCORD_TOKEN';
  return 'DISCORD_TOKEN or TELEGRAM_TOKEN';
}

function looksLikeToken(s: string): boolean {
  return /^\d{5,}:[A-Za-z0-9_-]{30,}$/.test(s) || /^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{20,}$/.test(s);
}

// ---- merging ----------------------------------------------------------------------------------

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toJson(v: unknown): JsonObject {
  // Overrides come from code: drop undefined members the way JSON would.
  const copy: unknown = JSON.parse(JSON.stringify(v ?? {}));
  return isObject(copy) ? copy : {};
}

/** Objects merge key by key; arrays and scalars replace. */
function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = Object.prototype.hasOwnProperty.call(out, key) ? out[key] : undefined;
    const next = isObject(prev) && isObject(value) ? deepMerge(prev, value) : value;
    // defineProperty keeps a literal "__proto__" key an ordinary (and then unknown) key.
    Object.defineProperty(out, key, { value: next, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function setAt(obj: JsonObject, keyPath: readonly string[], value: Json): JsonObject {
  const [head, ...rest] = keyPath;
  if (head === undefined) return obj;
  const child = obj[head];
  return { ...obj, [head]: rest.length === 0 ? value : setAt(isObject(child) ? child : {}, rest, value) };
}

function getAt(obj: unknown, keyPath: readonly PathKey[]): unknown {
  let cur: unknown = obj;
  for (const key of keyPath) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PathKey, unknown>)[key];
  }
  return cur;
}

function recordOrigins(value: Json, at: PathKey[], origin: string, origins: Map<string, string>): void {
  if (isObject(value)) {
    for (const [key, child] of Object.entries(value)) recordOrigins(child, [...at, key], origin, origins);
  }
  if (at.length) origins.set(formatPath(at), origin);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

// ---- messages ---------------------------------------------------------------------------------

function formatPath(at: readonly PathKey[]): string {
  let out = '';
  for (const key of at) out += typeof key === 'number' ? `[${key}]` : out ? `.${key}` : key;
  return out;
}

function show(value: unknown): string {
  if (value === undefined) return '(missing)';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}…` : text;
}

/** Where the nearest set value on this path came from (an element inherits its list's origin). */
function originSuffix(at: readonly PathKey[], origins: Map<string, string>): string {
  for (let n = at.length; n >= 1; n--) {
    const origin = origins.get(formatPath(at.slice(0, n)));
    if (origin) return ` (${origin})`;
  }
  return '';
}

/** Typos first: a misspelt key also leaves the real one at its default, which is not the problem. */
function pickIssue(issues: z.core.$ZodIssue[]): z.core.$ZodIssue {
  return issues.find((i) => i.code === 'unrecognized_keys') ?? (issues[0] as z.core.$ZodIssue);
}

function describeIssue(issue: z.core.$ZodIssue, input: JsonObject, origins: Map<string, string>): string {
  const at = issue.path.filter((k): k is PathKey => typeof k === 'string' || typeof k === 'number');
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    const full = formatPath([...at, key]);
    const known = knownKeys(at);
    const guess = closest(key, known);
    const hint = guess
      ? ` (did you mean ${formatPath([...at, guess])}?)`
      : known.length
        ? ` (known keys${at.length ? ` in ${formatPath(at)}` : ''}: ${known.join(', ')})`
        : '';
    return `config: ${full} is not a known key${hint}${originSuffix([...at, key], origins)}`;
  }
  const key = formatPath(at);
  const value = getAt(input, at);
  return `config: ${key || '(top level)'} = ${show(value)} — expected ${expectation(issue, at)}${originSuffix(at, origins)}`;
}

interface SchemaLike {
  type?: string;
  shape?: Record<string, SchemaLike>;
  element?: SchemaLike;
  options?: readonly unknown[];
  minValue?: number | null;
  maxValue?: number | null;
  isInt?: boolean;
  minLength?: number | null;
  _zod?: { def?: { innerType?: SchemaLike; checks?: { _zod?: { def?: { check?: string; inclusive?: boolean } } }[] } };
}

function unwrap(s: SchemaLike | undefined): SchemaLike | undefined {
  let cur = s;
  while (cur && (cur.type === 'default' || cur.type === 'optional' || cur.type === 'nullable'))
    cur = cur._zod?.def?.innerType;
  return cur;
}

function schemaAt(at: readonly PathKey[]): SchemaLike | undefined {
  let cur: SchemaLike | undefined = ConfigSchema as unknown as SchemaLike;
  for (const key of at) {
    cur = unwrap(cur);
    if (!cur) return undefined;
    if (cur.type === 'object' && typeof key === 'string') cur = cur.shape?.[key];
    else if (cur.type === 'array' && typeof key === 'number') cur = cur.element;
    else return undefined;
  }
  return unwrap(cur);
}

function knownKeys(at: readonly PathKey[]): string[] {
  const s = schemaAt(at);
  return s?.type === 'object' && s.shape ? Object.keys(s.shape) : [];
}

function expectation(issue: z.core.$ZodIssue, at: readonly PathKey[]): string {
  // Custom messages in the schema (regex formats, refinements) already say what is allowed.
  if ((issue.code === 'invalid_format' && issue.format === 'regex') || issue.code === 'custom') return issue.message;
  if (issue.code === 'invalid_format' && issue.format === 'url') return 'a URL such as https://example.org';
  const s = schemaAt(at);
  return describeSchema(s, issue) ?? issue.message;
}

function describeSchema(s: SchemaLike | undefined, issue: z.core.$ZodIssue): string | undefined {
  if (!s) return undefined;
  switch (s.type) {
    case 'number': {
      const kind = s.isInt ? 'an integer' : 'a number';
      const exclusiveMin = (s._zod?.def?.checks ?? []).some(
        (c) => c._zod?.def?.check === 'greater_than' && c._zod.def.inclusive === false,
      );
      const min = s.minValue ?? undefined;
      const max = s.maxValue ?? undefined;
      const hasMin = min !== undefined && Number.isFinite(min) && min > Number.MIN_SAFE_INTEGER;
      const hasMax = max !== undefined && Number.isFinite(max) && max < Number.MAX_SAFE_INTEGER;
      if (exclusiveMin && hasMax) return `${kind} greater than ${min} and at most ${max}`;
      if (exclusiveMin) return `${kind} greater than ${min}`;
      if (hasMin && hasMax) return `${kind} between ${min} and ${max}`;
      if (hasMin) return `${kind} of at least ${min}`;
      if (hasMax) return `${kind} of at most ${max}`;
      return kind;
    }
    case 'boolean':
      return 'true or false';
    case 'enum':
      return `one of ${(s.options ?? []).map((o) => JSON.stringify(o)).join(', ')}`;
    case 'string':
      return s.minLength ? 'a non-empty string' : 'a string';
    case 'array': {
      const el = unwrap(s.element);
      const of = el?.type === 'enum' ? `any of ${(el.options ?? []).map((o) => JSON.stringify(o)).join(', ')}` : undefined;
      if (issue.code === 'too_small') return `a list with at least ${String(issue.minimum)} entr${issue.minimum === 1 ? 'y' : 'ies'}${of ? ` (${of})` : ''}`;
      if (el?.type === 'object') return 'a list of objects (see config/default.jsonc)';
      return of ? `a list of ${of}` : 'a list, e.g. ["123"]';
    }
    case 'object':
      return `an object with keys ${Object.keys(s.shape ?? {}).join(', ')}`;
    default:
      return undefined;
  }
}

/** The known key nearest to a typo, if it is near enough to be a likely meaning. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}
