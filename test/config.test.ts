import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseJsonc } from '../src/config/jsonc.js';
import { ConfigError, defaultConfig, loadConfig } from '../src/config/load.js';
import { ConfigSchema } from '../src/config/schema.js';

const root = mkdtempSync(path.join(tmpdir(), 'config-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A fresh working directory holding `text` as a config file; returns both paths. */
function withFile(text: string, name = 'local.jsonc'): { cwd: string; file: string } {
  const cwd = path.join(root, `case-${++counter}`);
  mkdirSync(cwd, { recursive: true });
  const file = path.join(cwd, name);
  writeFileSync(file, text);
  return { cwd, file };
}

function loadError(text: string, env: NodeJS.ProcessEnv = {}): string {
  const { cwd, file } = withFile(text);
  try {
    loadConfig({ file, env, cwd });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    // One line for the operator, never a stack trace.
    expect(message).not.toContain('\n');
    expect(message).not.toMatch(/\s+at\s.+\(.+:\d+:\d+\)/);
    return message;
  }
  throw new Error('expected loadConfig to fail');
}

const defaultsPath = path.join(import.meta.dirname, '..', 'config', 'default.jsonc');

describe('config/default.jsonc', () => {
  it('is valid on its own and covers exactly the schema', () => {
    const parsed = ConfigSchema.safeParse(parseJsonc(readFileSync(defaultsPath, 'utf8')));
    expect(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues)).toBe(true);
  });

  it('documents every key with a comment', () => {
    const lines = readFileSync(defaultsPath, 'utf8').split('\n');
    const undocumented: string[] = [];
    lines.forEach((line, i) => {
      const key = /^\s*"([A-Za-z]+)":/.exec(line)?.[1];
      if (!key) return;
      // Walk up past sibling key lines of the same group; the first other line must be a comment.
      let j = i - 1;
      while (j >= 0 && /^\s*"[A-Za-z]+":.*,\s*$/.test(lines[j] ?? '')) j--;
      if (!/^\s*\/\//.test(lines[j] ?? '') && !/^\s*\/\//.test(lines[j - 1] ?? '')) undocumented.push(`${key} (line ${i + 1})`);
    });
    expect(undocumented).toEqual([]);
  });

  it('holds the agreed club defaults', () => {
    const c = defaultConfig({}, '/srv/bot');
    expect(c.dataDir).toBe(path.resolve('/srv/bot', 'data'));
    expect(c.models).toEqual({ dir: path.resolve('/srv/bot', 'models'), default: '' });
    expect(c.engine.providers).toEqual(['cuda', 'webgpu', 'cpu']);
    expect(c.limits).toEqual({
      maxSteps: 50,
      maxPixels: 1024 * 1024,
      maxSide: 1536,
      maxImagesPerJob: 4,
      maxPromptLength: 1000,
      maxPromptChunks: 8,
      maxGuidance: 30,
    });
    expect(c.defaults).toMatchObject({ aspect: '1:1', steps: 25, guidance: 7, sampler: 'Euler a', images: 4 });
    expect(c.queue).toMatchObject({ perMemberPending: 3, globalPending: 50, tiers: [], maxAttempts: 3 });
    expect(c.permissions).toMatchObject({ reroll: 'anyone', vary: 'anyone', cancel: 'owner', delete: 'owner' });
    expect(c.retention).toEqual({ days: 30, sweepMinutes: 60 });
    expect(c.secrets).toEqual({});
  });
});

describe('loadConfig', () => {
  it('merges defaults ← local file ← overrides ← environment, arrays replacing', () => {
    const { cwd, file } = withFile(`{
      // comments and trailing commas are fine
      "limits": { "maxSteps": 40, },
      "engine": { "providers": ["cpu"] },
      "queue": { "tiers": [{ "name": "patrons", "roles": ["111"], "weight": 2 }] },
      "logLevel": "debug",
    }`);
    const c = loadConfig({
      file,
      cwd,
      env: { LOG_LEVEL: 'warn', MODELS_DIR: 'weights', DISCORD_TOKEN: ' abc.def.ghi ' },
      overrides: { limits: { maxImagesPerJob: 2 }, defaults: { images: 2 } },
    });
    expect(c.limits.maxSteps).toBe(40);
    expect(c.limits.maxImagesPerJob).toBe(2);
    expect(c.limits.maxPixels).toBe(1024 * 1024);
    expect(c.engine.providers).toEqual(['cpu']);
    expect(c.engine.warmup).toBe(true);
    expect(c.queue.tiers).toEqual([{ name: 'patrons', roles: ['111'], users: [], weight: 2 }]);
    expect(c.logLevel).toBe('warn');
    expect(c.models.dir).toBe(path.join(cwd, 'weights'));
    expect(c.secrets).toEqual({ discordToken: 'abc.def.ghi' });
  });

  it('finds config/local.jsonc in the working directory, or the file BOT_CONFIG names', () => {
    const { cwd } = withFile('{ "limits": { "maxSteps": 33 } }');
    mkdirSync(path.join(cwd, 'config'));
    writeFileSync(path.join(cwd, 'config', 'local.jsonc'), '{ "limits": { "maxSteps": 44 } }');
    expect(loadConfig({ env: {}, cwd }).limits.maxSteps).toBe(44);
    expect(loadConfig({ env: { BOT_CONFIG: 'local.jsonc' }, cwd }).limits.maxSteps).toBe(33);
    expect(() => loadConfig({ env: { BOT_CONFIG: 'missing.jsonc' }, cwd })).toThrow(
      /missing\.jsonc \(named by BOT_CONFIG\) does not exist/,
    );
  });

  it('reads tokens from the environment only', () => {
    const c = loadConfig({ env: { TELEGRAM_TOKEN: '123:abc', DISCORD_TOKEN: '' }, cwd: withFile('{}').cwd });
    expect(c.secrets).toEqual({ telegramToken: '123:abc' });
    expect(loadError('{ "discord": { "token": "abc" } }')).toMatch(
      /^config: discord\.token in .*local\.jsonc — tokens do not belong in config files; put it in the environment \(DISCORD_TOKEN\)/,
    );
    expect(loadError('{ "telegram": { "botToken": "x" } }')).toContain('TELEGRAM_TOKEN');
    // A token pasted into an innocent key is caught by its shape.
    expect(loadError('{ "discord": { "commandGuild": "7712345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawZ" } }')).toContain(
      'looks like a bot token',
    );
  });

  it('names the key, the value and what is allowed', () => {
    expect(loadError('{ "limits": { "maxSteps": "fifty" } }')).toMatch(
      /^config: limits\.maxSteps = "fifty" — expected an integer between 1 and 150 \(in .*local\.jsonc\)$/,
    );
    expect(loadError('{ "limits": { "maxSteps": 1.5 } }')).toContain('limits.maxSteps = 1.5 — expected an integer between 1 and 150');
    expect(loadError('{ "logLevel": "loud" }')).toContain(
      'logLevel = "loud" — expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent"',
    );
    expect(loadError('{ "engine": { "providers": ["tpu"] } }')).toContain(
      'engine.providers[0] = "tpu" — expected one of "cuda", "webgpu", "cpu"',
    );
    expect(loadError('{ "engine": { "providers": [] } }')).toContain('engine.providers = [] — expected a list with at least 1 entry');
    expect(loadError('{ "queue": { "initialSecondsPerStep": 0 } }')).toContain('expected a number greater than 0');
    expect(loadError('{ "discord": { "allowDMs": "yes" } }')).toContain('discord.allowDMs = "yes" — expected true or false');
    expect(loadError('{ "storage": { "url": "mysql://x" } }')).toContain(
      'storage.url = "mysql://x" — expected a sqlite:// (with a file path) or redis:// URL',
    );
    expect(loadError('{ "storage": { "url": "sqlite://" } }')).toContain('storage.url = "sqlite://" — expected a sqlite:// (with a file path)');
    expect(loadError('{ "discord": { "allowedGuilds": ["not an id"] } }')).toContain(
      'discord.allowedGuilds[0] = "not an id" — expected an id of letters, digits, _ or -',
    );
    expect(loadError('{ "permissions": null }')).toContain('permissions = null — expected an object with keys admins');
  });

  it('suggests the key a typo probably meant', () => {
    expect(loadError('{ "limits": { "maxStepz": 30 } }')).toMatch(
      /^config: limits\.maxStepz is not a known key \(did you mean limits\.maxSteps\?\)/,
    );
    expect(loadError('{ "telegramm": {} }')).toContain('telegramm is not a known key (did you mean telegram?)');
    expect(loadError('{ "zzz": 1 }')).toContain('zzz is not a known key (known keys: dataDir, logLevel');
    // A JSON "__proto__" key is an ordinary unknown key, not a prototype change.
    expect(loadError('{ "__proto__": { "logLevel": "loud" } }')).toContain('__proto__ is not a known key');
    expect(loadError('{ "limits": { "constructor": 1 } }')).toContain('limits.constructor is not a known key');
  });

  it('says which environment variable set a bad value', () => {
    expect(loadError('{}', { LOG_LEVEL: 'chatty' })).toBe(
      'config: logLevel = "chatty" — expected one of "fatal", "error", "warn", "info", "debug", "trace", "silent" (from the environment variable LOG_LEVEL)',
    );
    expect(loadError('{}', { STORAGE_URL: 'postgres://db' })).toContain('(from the environment variable STORAGE_URL)');
  });

  it('checks fields against each other', () => {
    expect(loadError('{ "limits": { "maxSteps": 20 } }')).toContain('defaults.steps = 25 — expected at most limits.maxSteps (20)');
    expect(loadError('{ "defaults": { "images": 6 } }')).toContain('defaults.images = 6 — expected at most limits.maxImagesPerJob (4)');
    expect(loadError('{ "defaults": { "varySubtle": 0.5 } }')).toContain('expected less than defaults.varyStrong (0.4)');
    expect(loadError('{ "defaults": { "aspect": "0:1" } }')).toContain('defaults.aspect = "0:1"');
    expect(loadError('{ "defaults": { "guidance": 40 } }')).toContain('at most limits.maxGuidance (30)');
  });

  it('reports broken JSONC with the file and line', () => {
    expect(loadError('{\n  "limits": {\n    "maxSteps": 40\n    "maxSide": 1024\n  }\n}')).toMatch(
      /^config: .*local\.jsonc line 4, column 5: /,
    );
    expect(loadError('{ "a": 1 /* never closed')).toMatch(/line 1, column 10: unclosed \/\* comment/);
    expect(loadError('[1, 2]')).toContain('must hold one { … } object at the top');
  });

  it('resolves relative directories against the working directory; the database follows dataDir', () => {
    const { cwd, file } = withFile('{ "dataDir": "state", "models": { "dir": "../shared-models" } }');
    const c = loadConfig({ file, env: {}, cwd });
    expect(c.dataDir).toBe(path.join(cwd, 'state'));
    expect(c.models.dir).toBe(path.resolve(cwd, '../shared-models'));
    expect(c.storage.url).toBe(`sqlite://${path.join(cwd, 'state', 'bot.sqlite')}`);
    // An explicit storage URL is kept as written.
    const explicit = loadConfig({ file, env: { STORAGE_URL: 'redis://127.0.0.1:6379' }, cwd });
    expect(explicit.storage.url).toBe('redis://127.0.0.1:6379');
    expect(loadConfig({ file, env: { DATA_DIR: '/var/lib/bot' }, cwd }).dataDir).toBe(path.resolve('/var/lib/bot'));
  });

  it('returns a deeply frozen config', () => {
    const c = loadConfig({ env: {}, cwd: withFile('{}').cwd });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.limits)).toBe(true);
    expect(Object.isFrozen(c.engine.providers)).toBe(true);
    expect(() => {
      (c.limits as { maxSteps: number }).maxSteps = 999;
    }).toThrow();
  });
});

describe('defaultConfig', () => {
  it('applies overrides without reading files or the environment', () => {
    const c = defaultConfig({ dataDir: path.join(root, 'd'), limits: { maxSteps: 10 }, defaults: { steps: 5 } });
    expect(c.dataDir).toBe(path.join(root, 'd'));
    expect(c.limits.maxSteps).toBe(10);
    expect(c.storage.url).toBe(`sqlite://${path.join(root, 'd', 'bot.sqlite')}`);
    expect(() => defaultConfig({ limits: { maxSteps: 10 } })).toThrow(ConfigError);
  });
});

describe('parseJsonc', () => {
  it('keeps comment-like text inside strings', () => {
    expect(parseJsonc('{ "url": "https://x//y", "s": "/* no */", "q": "a\\"//b" } // end')).toEqual({
      url: 'https://x//y',
      s: '/* no */',
      q: 'a"//b',
    });
  });
  it('drops trailing commas only before a closing bracket', () => {
    expect(parseJsonc('[1, 2, /* c */ ]')).toEqual([1, 2]);
    expect(() => parseJsonc('[1,, 2]')).toThrow();
  });
});
