// Who may use the web studio, over plain HTTP against the real server (no browser needed):
// refusals for an open studio on a public address, wrong passwords, expired or tampered
// links, missing CSRF tokens, foreign origins, oversized bodies and picture URLs that try to
// leave the data directory.
import { existsSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import { seal, signInLink } from '../commands/web.js';
import { startWeb, type WebHandle } from '../src/adapters/web/index.js';
import { sweepUploads } from '../src/adapters/web/uploads.js';
import { deliveryFailureReason } from '../src/adapters/web/metrics.js';
import type { Config } from '../src/config/schema.js';
import type { ReplyTarget, Requester } from '../src/jobs/types.js';
import { createHarness, waitForJobEvent, type Harness } from './helpers/harness.js';

const PASSWORD = 'correct horse battery staple';
const SECRET = 'a-test-signing-secret-of-at-least-32-characters';
const MEMBER: Requester = { platform: 'discord', userId: '123456789', name: 'Ada', roles: ['555'] };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request: no URL normalisation, any Host or Origin header. */
function call(url: string, pathname: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path: pathname, method: init.method ?? 'GET', headers: init.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

function cookieOf(answer: Answer): string {
  const set = answer.headers['set-cookie'];
  const first = Array.isArray(set) ? set[0] : set;
  return (first ?? '').split(';')[0] ?? '';
}

function json(body: string): Record<string, unknown> {
  return JSON.parse(body) as Record<string, unknown>;
}

function withWeb(config: Config, web: Partial<Config['web']>, secrets: Config['secrets']): Config {
  return { ...config, web: { ...config.web, port: 0, ...web }, secrets: { ...config.secrets, ...secrets } };
}

describe('web studio access', () => {
  let now = Date.now();
  const clock = { advance: (ms: number) => (now += ms) };
  let h: Harness;
  let web: WebHandle;
  let config: Config;

  beforeAll(async () => {
    h = await createHarness();
    config = withWeb(h.config, { enabled: true }, { webPassword: PASSWORD, webSecret: SECRET });
    web = await startWeb({ config, jobs: h.jobs, commands: { ...h.commands, config }, log: h.log, now: () => now });
  });
  afterAll(async () => {
    await web?.stop();
    await h?.close();
  });

  const signInWithPassword = async (name: string) => {
    const answer = await call(web.url, '/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: PASSWORD, name }),
    });
    expect(answer.status).toBe(200);
    return { cookie: cookieOf(answer), csrf: String(json(answer.body).csrf) };
  };

  it('refuses to start on a public address with no password or sign-in secret, and with a short secret', async () => {
    const open = withWeb(h.config, { host: '0.0.0.0' }, {});
    await expect(startWeb({ config: open, jobs: h.jobs, commands: h.commands, log: h.log })).rejects.toThrow(/WEB_PASSWORD.*WEB_SECRET/);
    const weak = withWeb(h.config, { host: '0.0.0.0' }, { webSecret: 'short' });
    await expect(startWeb({ config: weak, jobs: h.jobs, commands: h.commands, log: h.log })).rejects.toThrow(/at least 32 characters/);
  });

  it('asks for a sign-in, refuses a wrong password, and accepts the right one', async () => {
    const me = await call(web.url, '/api/me');
    expect(me.status).toBe(401);
    expect(json(me.body).signIn).toEqual({ password: true, link: true });
    expect((await call(web.url, '/api/events')).status).toBe(401);

    const wrong = await call(web.url, '/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ password: 'guess', name: 'Mallory' }),
    });
    expect(wrong.status).toBe(403);
    expect(json(wrong.body).error).toBe('Wrong password.');
    expect(wrong.headers['set-cookie']).toBeUndefined();

    // Guessing is slowed down: after five wrong passwords this address waits, even with the right one.
    const guess = () =>
      call(web.url, '/api/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ password: 'guess', name: 'Mallory' }),
      });
    for (let i = 0; i < 4; i++) expect((await guess()).status).toBe(403);
    const blocked = await guess();
    expect(blocked.status).toBe(429);
    expect(json(blocked.body).error).toMatch(/Too many wrong passwords from here; try again in 10 minutes/);
    clock.advance(11 * 60_000);

    const { cookie } = await signInWithPassword('Bea');
    const again = await call(web.url, '/api/me', { headers: { Cookie: cookie } });
    expect(json(again.body).member).toEqual({ name: 'Bea', platform: 'web' });
    expect(json(again.body).admin).toBe(false);
    const admin = await call(web.url, '/api/admin', { headers: { Cookie: cookie } });
    expect(admin.status).toBe(403);
    // The password never reaches the log.
    expect(h.logLines.join('\n')).not.toContain(PASSWORD);
  });

  it('refuses a state-changing request without the CSRF token or from another site', async () => {
    const { cookie, csrf } = await signInWithPassword('Cy');
    const post = (headers: Record<string, string>) =>
      call(web.url, '/api/action', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Cookie: cookie, ...headers },
        body: JSON.stringify({ payload: 'v1:in:zzzzzzzz' }),
      });
    const missing = await post({});
    expect(missing.status).toBe(403);
    expect(json(missing.body).error).toContain('security token');
    expect((await post({ 'X-CSRF-Token': `${csrf}x` })).status).toBe(403);
    const foreign = await post({ 'X-CSRF-Token': csrf, Origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(json(foreign.body).error).toContain('other sites');
    // With the token the request goes through to the command (which answers for the unknown job).
    const ok = await post({ 'X-CSRF-Token': csrf });
    expect(ok.status).toBe(422);
    expect(json(ok.body).error).toContain('expired or was deleted');
  });

  it('/web answers privately with a link that signs the browser in as that member; expired and tampered links are refused', async () => {
    const reply = await runCommand(
      { command: 'web', requester: MEMBER, target: { platform: 'discord', chatId: '1', handle: {} }, via: 'slash' },
      { ...h.commands, config: { ...config, web: { ...config.web, publicUrl: web.url } } },
    );
    expect(reply).toMatchObject({ ok: true, visibility: 'private' });
    const link = /(http:\/\/\S+\/signin\?t=\S+)/.exec(reply.text)?.[1] ?? '';
    const path = link.slice(web.url.length);
    const signedIn = await call(web.url, path);
    expect(signedIn.status).toBe(303);
    expect(signedIn.headers.location).toBe('/');
    const cookie = cookieOf(signedIn);
    const me = await call(web.url, '/api/me', { headers: { Cookie: cookie } });
    expect(json(me.body).member).toEqual({ name: 'Ada', platform: 'discord' });

    const expired = signInLink(config, SECRET, MEMBER, now - config.web.linkMinutes * 60_000 - 1000);
    const late = await call(web.url, expired.slice(expired.indexOf('/signin')));
    expect(late.status).toBe(403);
    expect(late.body).toContain('expired');
    expect(late.headers['set-cookie']).toBeUndefined();

    const [body, sig] = path.slice('/signin?t='.length).split('.');
    const forged = Buffer.from(JSON.stringify({ p: 'discord', u: '1', n: 'Admin', r: [], exp: Date.now() + 60_000 })).toString('base64url');
    for (const token of [`${forged}.${sig}`, `${body}.${sig?.slice(0, -2)}AA`, seal('another-secret-of-at-least-32-characters!', 'signin', { p: 'discord', u: '1', n: 'x', r: [] }, Date.now() + 60_000)]) {
      const refused = await call(web.url, `/signin?t=${token}`);
      expect(refused.status).toBe(403);
      expect(refused.body).toContain('not valid');
    }
    // A session cookie is not a sign-in link, even though the same secret seals both.
    const sessionToken = cookie.slice(cookie.indexOf('=') + 1);
    expect((await call(web.url, `/signin?t=${sessionToken}`)).status).toBe(403);

    // From the studio itself, or where links are off, /web says why instead.
    const fromWeb = await runCommand(
      { command: 'web', requester: { ...MEMBER, platform: 'web' }, target: { platform: 'web', chatId: 'x', handle: {} }, via: 'slash' },
      { ...h.commands, config },
    );
    expect(fromWeb.ok).toBe(false);
    // Telegram cannot answer privately in a group: there the link is refused, in the private chat given.
    const telegram = { ...h.commands, config };
    const tgMember: Requester = { platform: 'telegram', userId: '777', name: 'Tess', roles: [] };
    const inGroup = await runCommand({ command: 'web', requester: tgMember, target: { platform: 'telegram', chatId: '-100123', handle: {} }, via: 'slash' }, telegram);
    expect(inGroup.ok).toBe(false);
    expect(inGroup.text).toContain('private chat');
    expect(inGroup.text).not.toContain('http');
    const inPrivate = await runCommand({ command: 'web', requester: tgMember, target: { platform: 'telegram', chatId: '777', handle: {} }, via: 'slash' }, telegram);
    expect(inPrivate.ok).toBe(true);
    expect(inPrivate.text).toContain('/signin?t=');

    const off = await runCommand({ command: 'web', requester: MEMBER, target: { platform: 'discord', chatId: '1', handle: {} }, via: 'slash' }, h.commands);
    expect(off).toMatchObject({ ok: false, visibility: 'private' });
    expect(off.text).toContain('WEB_SECRET');
  });

  it('serves pictures only by job id and index, never outside the data directory', async () => {
    const { cookie } = await signInWithPassword('Di');
    for (const pathname of ['/img/../../etc/passwd', '/img/..%2f..%2fetc%2fpasswd/0', '/img/abc/..%2f..%2fbot.sqlite', '/img/abc/%2e%2e']) {
      const answer = await call(web.url, pathname, { headers: { Cookie: cookie } });
      expect(answer.status).toBe(404);
      expect(answer.body).not.toContain('root:');
    }
    // A damaged record pointing outside the data directory is refused too.
    const job = {
      id: 'evil0001',
      seq: await h.store.jobs.nextSeq(),
      kind: 'imagine' as const,
      spec: { prompt: 'x', negativePrompt: '', width: 64, height: 64, steps: 1, guidance: 1, sampler: 'Euler' as const, seed: 1, count: 1, model: 'tiny' },
      requester: MEMBER,
      target: { platform: 'web' as const, chatId: 'discord:123456789', handle: {} },
      tier: 0,
      status: 'delivered' as const,
      createdAt: Date.now(),
      finishedAt: Date.now(),
      attempts: 1,
      notes: [],
      result: {
        images: [{ file: '../../../../../../etc/passwd', seed: 1, width: 64, height: 64, infoText: 'x' }],
        model: 'tiny',
        provider: 'cpu',
        durationMs: 1,
        truncation: {},
      },
    };
    await h.store.jobs.put(job);
    const answer = await call(web.url, '/img/evil0001/0', { headers: { Cookie: cookie } });
    expect(answer.status).toBe(404);
    expect(answer.body).not.toContain('root:');
    expect(h.logLines.some((l) => l.includes('outside the data directory') && l.includes('evil0001'))).toBe(true);
    // Without a session no picture is served at all.
    expect((await call(web.url, '/img/evil0001/0')).status).toBe(401);
  });

  it('answers an oversized body with its size and the limit, not a crash', async () => {
    const { cookie, csrf } = await signInWithPassword('Ed');
    const big = JSON.stringify({ prompt: 'x'.repeat(300 * 1024) });
    const answer = await call(web.url, '/api/imagine', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Cookie: cookie, 'X-CSRF-Token': csrf },
      body: big,
    });
    expect(answer.status).toBe(413);
    expect(json(answer.body).error).toMatch(/too large \(30\d KB\).*at most 256 KB/);
    expect((await call(web.url, '/healthz')).status).toBe(200);
  });

  it('on loopback with no access configured, answers only to loopback host names (no DNS rebinding)', async () => {
    const local = withWeb(h.config, {}, {});
    const studio = await startWeb({ config: local, jobs: h.jobs, commands: h.commands, log: h.log });
    try {
      const me = await call(studio.url, '/api/me');
      expect(me.status).toBe(200);
      expect(json(me.body).member).toEqual({ name: 'local admin', platform: 'web' });
      const rebound = await call(studio.url, '/api/me', { headers: { Host: 'evil.example:7860' } });
      expect(rebound.status).toBe(403);
    } finally {
      await studio.stop();
    }
  });

  it("the admin view marks every model the engine holds as loaded, not only the last one drawn", async () => {
    const local = withWeb(h.config, {}, {});
    const names = h.models.map((m) => m.name);
    // This server has drawn nothing (no last model): what it shows comes from the engine's LRU.
    const engine = { provider: () => 'cpu' as const, loadedModels: () => [names[0]!] };
    const studio = await startWeb({ config: local, jobs: h.jobs, commands: h.commands, log: h.log, engine });
    try {
      const me = await call(studio.url, '/api/me');
      const admin = await call(studio.url, '/api/admin', { headers: { Cookie: cookieOf(me) } });
      expect(admin.status, admin.body).toBe(200);
      const models = json(admin.body).models as { name: string; loaded: boolean }[];
      expect(models.find((m) => m.name === names[0])?.loaded).toBe(true);
      expect(models.filter((m) => m.loaded)).toHaveLength(1);
    } finally {
      await studio.stop();
    }
  });

  it('sweeps uploads older than retention.days, and only uploads', async () => {
    const dir = path.join(h.config.dataDir, 'uploads');
    await mkdir(dir, { recursive: true });
    const old = path.join(dir, 'aaaaaaaaaaaa.png');
    const fresh = path.join(dir, 'bbbbbbbbbbbb.png');
    const other = path.join(dir, 'keep-me.txt');
    for (const file of [old, fresh, other]) await writeFile(file, 'x');
    const longAgo = new Date(Date.now() - (h.config.retention.days + 1) * 86_400_000);
    await utimes(old, longAgo, longAgo);
    await utimes(other, longAgo, longAgo);
    expect(await sweepUploads(h.config, h.log)).toBe(1);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(other)).toBe(true);
    expect(await sweepUploads({ ...h.config, retention: { ...h.config.retention, days: 0 } }, h.log, Date.now() + 1e12)).toBe(0);
  });

  it('GET /metrics speaks the Prometheus text format', async () => {
    const answer = await call(web.url, '/metrics');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toContain('text/plain; version=0.0.4');
    for (const name of ['imagine_engine_busy_ratio', 'process_resident_memory_bytes', 'imagine_queue_depth']) {
      expect(answer.body).toContain(`# TYPE ${name}`);
    }
    expect(answer.body).toMatch(/^imagine_engine_busy_ratio \d+(\.\d+)?$/m);
  });

  it('the club gallery shows results posted in server channels and groups, never private chats, and leaves out deleted ones', async () => {
    const studio = await startWeb({ config, jobs: h.jobs, commands: { ...h.commands, config }, log: h.log, history: h.store.jobs, now: () => now });
    try {
      const draw = async (who: string, target: ReplyTarget, prompt: string) => {
        const requester: Requester = { platform: target.platform, userId: who, name: who, roles: [] };
        const reply = await runCommand({ command: 'imagine', via: 'text', text: `${prompt} --steps 2 --n 1`, requester, target }, h.commands);
        expect(reply.ok, reply.text).toBe(true);
        const jobId = reply.queued!.job.id;
        await waitForJobEvent(h, jobId, 'done');
        // As the chat adapter would once the platform accepted the upload.
        await h.jobs.markDelivered(jobId);
        return { jobId, requester, target };
      };
      const channel = await draw('dc-ann', { platform: 'discord', chatId: 'chan-1', guildId: 'guild-1', handle: {} }, 'a lighthouse in a channel');
      const group = await draw('tg-bo', { platform: 'telegram', chatId: '-100200300', handle: {} }, 'a kite in a group');
      const dm = await draw('tg-cy', { platform: 'telegram', chatId: '4242', handle: {} }, 'a secret in a private chat');
      const deleted = await draw('tg-bo', { platform: 'telegram', chatId: '-100200300', handle: {} }, 'a regret in a group');
      const gone = await runCommand(
        { command: 'delete', via: 'button', requester: deleted.requester, target: deleted.target, action: { action: 'delete', jobId: deleted.jobId } },
        h.commands,
      );
      expect(gone.ok, gone.text).toBe(true);

      const login = await call(studio.url, '/api/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ password: PASSWORD, name: 'Dee' }),
      });
      const cookie = cookieOf(login);
      const club = await call(studio.url, '/api/gallery?scope=club', { headers: { Cookie: cookie } });
      expect(club.status).toBe(200);
      const ids = (json(club.body).items as { id: string }[]).map((v) => v.id);
      expect(ids).toContain(channel.jobId);
      expect(ids).toContain(group.jobId);
      expect(ids).not.toContain(dm.jobId);
      expect(ids).not.toContain(deleted.jobId);
      expect(club.body).not.toContain('a secret in a private chat');
      // Dee made nothing, so her own gallery is empty.
      const mine = await call(studio.url, '/api/gallery', { headers: { Cookie: cookie } });
      expect(json(mine.body).items).toEqual([]);
    } finally {
      await studio.stop();
    }
  });

  it('/metrics counts results that could not be delivered, by platform and a bounded reason', async () => {
    const requester = { platform: 'telegram' as const, userId: 'tg-metrics', name: 'Tam', roles: [] };
    const target = { platform: 'telegram' as const, chatId: 'tg-chat', handle: {} };
    const reply = await runCommand({ command: 'imagine', via: 'text', text: 'a fox --steps 2 --n 1', requester, target }, h.commands);
    expect(reply.ok, reply.text).toBe(true);
    const jobId = reply.queued!.job.id;
    await waitForJobEvent(h, jobId, 'done');
    await h.jobs.markUndeliverable(jobId, 'telegram: Forbidden: bot was blocked by the user');
    const answer = await call(web.url, '/metrics');
    expect(answer.body).toContain('# TYPE imagine_delivery_failures_total counter');
    expect(answer.body).toMatch(/^imagine_delivery_failures_total\{platform="telegram",reason="forbidden_bot_was_blocked"\} 1$/m);
    expect(deliveryFailureReason('Discord refused the message (50013)')).toBe('50013');
  });
});
