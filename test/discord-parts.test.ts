// The Discord adapter's pieces that need no gateway: slash-command JSON, deployment, button
// layout, the edit throttle, token scrubbing, message splitting, and where the bot answers.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { decodeAction } from '../commands/codec.js';
import type { ButtonSpec, CommandContext } from '../commands/types.js';
import { resultRows } from '../src/adapters/discord/components.js';
import { startDiscord } from '../src/adapters/discord/index.js';
import { deployCommands, parseArgs } from '../src/adapters/discord/deploy-commands.js';
import { scrubTokens } from '../src/adapters/discord/errors.js';
import { composeContent } from '../src/adapters/discord/follow.js';
import { splitContent } from '../src/adapters/discord/interactions.js';
import { renderParts } from '../src/adapters/discord/markdown.js';
import { placeRefusal } from '../src/adapters/discord/places.js';
import { discordCommands } from '../src/adapters/discord/slash.js';
import { EditThrottle } from '../src/adapters/discord/throttle.js';
import { defaultConfig } from '../src/config/load.js';
import type { JobService } from '../src/jobs/types.js';
import { startFakeDiscord, type FakeDiscord } from './fakes/discord/index.js';

const exec = promisify(execFile);

describe('slash-command JSON', () => {
  it('maps the shared definitions to Discord option types, limits and choices', () => {
    const config = defaultConfig({ limits: { maxSteps: 40, maxPromptLength: 900 } });
    const commands = discordCommands(config);
    expect(commands.map((c) => c.name).sort()).toEqual(['cancel', 'help', 'imagine', 'queue', 'settings', 'web']);
    const imagine = commands.find((c) => c.name === 'imagine')!;
    const opt = (name: string) => imagine.options!.find((o) => o.name === name) as unknown as Record<string, unknown>;
    expect(imagine.options![0]).toMatchObject({ name: 'prompt', type: 3, required: true, max_length: 900 });
    expect(opt('steps')).toMatchObject({ type: 4, min_value: 1, max_value: 40 });
    expect(opt('seed')).toMatchObject({ type: 4, min_value: 0, max_value: 4294967295 });
    expect(opt('guidance')).toMatchObject({ type: 10 });
    const sampler = opt('sampler');
    expect((sampler.choices as { value: string }[]).map((c) => c.value)).toContain('Euler a');
    expect(sampler.max_length).toBeUndefined(); // Discord refuses max_length with choices
    for (const c of commands) {
      expect(c.name).toMatch(/^[-_a-z0-9]{1,32}$/);
      expect(c.description.length).toBeLessThanOrEqual(100);
      // Required options first, or Discord refuses the whole set.
      const required = (c.options ?? []).map((o) => o.required === true);
      expect(required).toEqual([...required].sort((a, b) => Number(b) - Number(a)));
    }
  });

  it('offers the commands in DMs only when DMs are allowed', () => {
    expect(discordCommands(defaultConfig({ discord: { allowDMs: true } }))[0]!.contexts).toEqual([0, 1]);
    expect(discordCommands(defaultConfig({ discord: { allowDMs: false } }))[0]!.contexts).toEqual([0]);
  });
});

describe('deploy-commands', () => {
  let fake: FakeDiscord | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('PUTs the whole set to the configured guild, or globally with --global', async () => {
    fake = await startFakeDiscord();
    const config = defaultConfig({ discord: { apiUrl: fake.apiUrl, commandGuild: fake.ids.guildId } });
    const guild = await deployCommands({ config, token: fake.token });
    expect(guild).toMatchObject({ scope: 'guild', guildId: fake.ids.guildId, applicationId: fake.ids.appId });
    const put = fake.routeRequests('PUT /applications/:app/guilds/:guild/commands')[0]!;
    expect(put.authorization).toBe(`Bot ${fake.token}`);
    expect(put.body).toEqual(JSON.parse(JSON.stringify(discordCommands(config))));

    const global = await deployCommands({ config, token: fake.token, global: true });
    expect(global.scope).toBe('global');
    expect(fake.commands.get('global')).toHaveLength(6);
  });

  it('reads its arguments strictly', () => {
    expect(parseArgs([])).toEqual({ global: false });
    expect(parseArgs(['--global'])).toEqual({ global: true });
    expect(parseArgs(['--guild', '222222222222222222'])).toEqual({ global: false, guildId: '222222222222222222' });
    expect(parseArgs(['--guild'])).toHaveProperty('error');
    expect(parseArgs(['--global', '--guild', '222222222222222222'])).toHaveProperty('error');
    expect(parseArgs(['--glolbal'])).toHaveProperty('error');
  });

  it('says clearly that DISCORD_TOKEN is missing', async () => {
    const env = { ...process.env };
    delete env.DISCORD_TOKEN;
    const run = exec(process.execPath, ['--import', 'tsx', 'src/adapters/discord/deploy-commands.ts'], { env, timeout: 60_000 });
    const failure = await run.then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain('DISCORD_TOKEN is not set');
    expect(failure?.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('result buttons', () => {
  const spec = (action: ButtonSpec['action']['action'], label: string, index?: number): ButtonSpec => ({
    action: { action, jobId: 'abcd1234', ...(index !== undefined ? { index } : {}) },
    label,
    style: 'secondary',
  });
  const jobWide = [spec('reroll', '🔁'), spec('info', 'ℹ️'), spec('delete', '🗑')];
  const labels = (rows: ReturnType<typeof resultRows>) => rows.map((r) => r.components.map((b) => b.label));

  it('puts 🔁 and ℹ️ at the ends of the U and V rows and 🗑 on its own', () => {
    const rows = resultRows([
      [0, 1, 2, 3].map((i) => spec('upscale', `U${i + 1}`, i)),
      [0, 1, 2, 3].map((i) => spec('vary', `V${i + 1}`, i)),
      jobWide,
    ]);
    expect(labels(rows)).toEqual([
      ['U1', 'U2', 'U3', 'U4', '🔁'],
      ['V1', 'V2', 'V3', 'V4', 'ℹ️'],
      ['🗑'],
    ]);
    const ids = rows.flatMap((r) => r.components.map((b) => b.custom_id));
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(decodeAction(id)?.jobId).toBe('abcd1234');
  });

  it('never puts more than five buttons in a row', () => {
    const nine = Array.from({ length: 9 }, (_, i) => spec('upscale', `U${i + 1}`, i));
    const rows = resultRows([nine, jobWide]);
    expect(rows.every((r) => r.components.length <= 5)).toBe(true);
    expect(rows.flatMap((r) => r.components)).toHaveLength(12);
    expect(labels(resultRows([jobWide]))).toEqual([['🔁', 'ℹ️', '🗑']]);
  });
});

describe('EditThrottle', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends the first state at once, then only the latest state once per interval', async () => {
    vi.useFakeTimers();
    const sent: number[] = [];
    const t = new EditThrottle<number>({ intervalMs: 1500, send: async (n) => void sent.push(n) });
    for (let n = 1; n <= 10; n++) t.push(n);
    expect(sent).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1499);
    expect(sent).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent).toEqual([1, 10]);
    t.push(11);
    t.backOff(5000); // a 429 said wait
    await vi.advanceTimersByTimeAsync(4000);
    expect(sent).toEqual([1, 10]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(sent).toEqual([1, 10, 11]);
  });

  it('keeps one edit in flight and drops what is pending when closed', async () => {
    vi.useFakeTimers();
    let release!: () => void;
    const sent: string[] = [];
    const t = new EditThrottle<string>({
      intervalMs: 10,
      send: (s) => {
        sent.push(s);
        return new Promise<void>((r) => (release = r));
      },
    });
    t.push('a');
    t.push('b');
    await vi.advanceTimersByTimeAsync(100);
    expect(sent).toEqual(['a']); // 'b' waits for 'a' to finish
    const closed = t.close();
    release();
    await closed;
    await vi.advanceTimersByTimeAsync(100);
    expect(sent).toEqual(['a']);
  });
});

describe('small helpers', () => {
  it('scrubs webhook and interaction tokens and bot tokens from text', () => {
    const text =
      'PATCH https://discord.com/api/v10/webhooks/111111111111111111/aW50ZXJhY3Rpb246MTIz/messages/@original failed; ' +
      'POST /interactions/777777777777777777/itok-secret-123/callback; token MTExMTExMTExMTExMTExMTEx.GaBcDe.abcdefghijklmnopqrstuvwxyz012345';
    const out = scrubTokens(text);
    expect(out).not.toContain('aW50ZXJhY3Rpb246MTIz');
    expect(out).not.toContain('itok-secret-123');
    expect(out).not.toContain('abcdefghijklmnopqrstuvwxyz012345');
    expect(out).toContain('webhooks/111111111111111111/[token]/messages');
  });

  it('splits long text at line breaks into Discord-sized messages', () => {
    const lines = Array.from({ length: 120 }, (_, i) => `line ${i} ${'x'.repeat(30)}`);
    const parts = splitContent(lines.join('\n'));
    expect(parts.length).toBeGreaterThan(1);
    for (const p of parts) expect(p.length).toBeLessThanOrEqual(2000);
    expect(parts.join('\n')).toBe(lines.join('\n'));
    expect(splitContent('y'.repeat(4500)).map((p) => p.length)).toEqual([2000, 2000, 500]);
  });

  it('keeps the caption and as many details as fit in 2000 characters', () => {
    const text = composeContent('caption', ['a'.repeat(1000), 'b'.repeat(1000), 'c']);
    expect(text.length).toBeLessThanOrEqual(2000);
    expect(text.startsWith('caption\naaa')).toBe(true);
    expect(text).not.toContain('b');
    expect(composeContent('z'.repeat(2500), []).length).toBeLessThanOrEqual(2000);
  });

  it('answers only in allowed guilds and channels (threads count as their parent) and DMs by config', () => {
    const open = defaultConfig({ discord: { allowDMs: false } });
    expect(placeRefusal(open, { guildId: 'g1', channelId: 'c1' })).toBeUndefined();
    expect(placeRefusal(open, { guildId: null, channelId: 'dm' })).toMatch(/direct messages/);
    const strict = defaultConfig({ discord: { allowDMs: true, allowedGuilds: ['g1'], allowedChannels: ['c1'] } });
    expect(placeRefusal(strict, { guildId: null, channelId: 'dm' })).toBeUndefined();
    expect(placeRefusal(strict, { guildId: 'g2', channelId: 'c1' })).toMatch(/server/);
    expect(placeRefusal(strict, { guildId: 'g1', channelId: 'c2' })).toContain('<#c1>');
    expect(placeRefusal(strict, { guildId: 'g1', channelId: 'thread', parentId: 'c1' })).toBeUndefined();
  });
});

describe('startDiscord login', () => {
  let fake: FakeDiscord | undefined;
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });

  it('fails with a clear message when the gateway refuses the token, without leaking it', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    const config = defaultConfig({ discord: { apiUrl: fake.apiUrl } });
    const log = pino({ level: 'silent' });
    // Login fails before any job is touched: a stand-in with only the listener hook is enough.
    let listening = 0;
    const jobs = {
      on: () => {
        listening++;
        return () => void listening--;
      },
    } as unknown as JobService;
    const wrong = 'MTIyMjIyMjIyMjIyMjIyMjIy.wrong.token-that-must-not-appear';
    const started = startDiscord({ config, jobs, commands: {} as CommandContext, log, token: wrong });
    const err = await started.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/Discord login failed/);
    expect(err?.message).not.toContain(wrong);
    expect(listening).toBe(0);
  });
});

describe('reply parts as Discord markdown', () => {
  it('draws verbatim parts as code blocks, so * _ ~~ copy as typed, and neutralises a fence inside', () => {
    const [msg] = renderParts([
      { text: 'Paste this to draw it again:' },
      { text: '/imagine **bold** _under_ ~~strike~~ --seed 5', code: true },
    ]);
    expect(msg).toBe('Paste this to draw it again:\n```\n/imagine **bold** _under_ ~~strike~~ --seed 5\n```');
    const [fenced] = renderParts([{ text: 'a ``` b', code: true }]);
    // Exactly one opening and one closing fence remain.
    expect(fenced!.match(/```/g)).toHaveLength(2);
    expect(fenced!.replace(/\u200b/g, '')).toBe('```\na ``` b\n```');
  });

  it('keeps every message within 2000 characters, closing and reopening a long code block', () => {
    const long = Array.from({ length: 120 }, (_, k) => `line ${k} ${'x'.repeat(30)}`).join('\n');
    const messages = renderParts([{ text: 'Info:' }, { text: long, code: true }]);
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) {
      expect(m.length).toBeLessThanOrEqual(2000);
      expect((m.match(/```/g) ?? []).length % 2).toBe(0);
    }
    const joined = messages.join('\n').replace(/\n?```\n?/g, '\n');
    for (let k = 0; k < 120; k++) expect(joined).toContain(`line ${k} `);
  });
});
