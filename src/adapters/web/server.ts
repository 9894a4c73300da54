// The studio's routes on node:http. Every handler is thin: who is asking (access.ts), what
// they ask for (a prompt, or a button payload through the shared codec), then runCommand and
// the reply as JSON. Files are served by job id and index, never by a path from the request.
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { decodeAction } from '../../../commands/codec.js';
import { commandDefinitions } from '../../../commands/definitions.js';
import { isAdmin, runCommand } from '../../../commands/index.js';
import { uploadFile } from '../../../commands/img2img.js';
import { commandForAction } from '../../../commands/routing.js';
import type { CommandContext, CommandReply, CommandRequest } from '../../../commands/types.js';
import { parseInfoText } from '../../../engine/infotext.js';
import { readTextChunks } from '../../../engine/png.js';
import { SAMPLERS, type Engine } from '../../../engine/types.js';
import { newJobId } from '../../jobs/ids.js';
import type { Job, JobRepo, JobService, ReplyTarget, Requester } from '../../jobs/types.js';
import type { Access, Session } from './access.js';
import type { EventHub } from './events.js';
import { HttpError, readBody, readJson, send, sendError, sendJson } from './http.js';
import type { Metrics } from './metrics.js';
import { downloadName, jobView } from './view.js';

/** The page's folder: beside this file, or in the source tree when running the build output (dist/). */
function staticDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.join(here, 'static'), path.resolve(here, '../../../../src/adapters/web/static')];
  return candidates.find((dir) => existsSync(path.join(dir, 'index.html'))) ?? candidates[0]!;
}
const STATIC_DIR = staticDir();
/** The page's files: a fixed list, so no request path ever reaches the file system. */
const STATIC_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
/** Prompts, info texts and button payloads: generous for a long info text, small for a server. */
const JSON_LIMIT = 256 * 1024;
const JOB_ID = /^[0-9a-z]{1,16}$/;
const PICTURE = /^(grid|[0-8])$/;
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/**
 * Posted where other members could see it: a Discord server channel or a Telegram group
 * (group and supergroup ids are negative). Private chats and each member's studio are not.
 */
function postedInPublic(job: Job): boolean {
  const { target } = job;
  if (target.platform === 'discord') return target.guildId !== undefined;
  if (target.platform === 'telegram') return target.chatId.startsWith('-');
  return false;
}

/** Results per gallery page, and how many finished jobs one page may look through. */
const GALLERY_PAGE = 12;
const GALLERY_SCAN = 2_000;
/** Uploads larger than this (in pixels) are refused before they are decoded. */
const MAX_UPLOAD_PIXELS = 4096 * 4096;
const CSP = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

export interface StudioDeps {
  commands: CommandContext;
  /** For the admin view: the execution provider in use (absent in tests that do not pass it). */
  engine?: Pick<Engine, 'provider' | 'loadedModels'>;
  /** For the gallery: finished jobs, newest first, from the store. */
  history?: Pick<JobRepo, 'recentFinished'>;
  jobs: JobService;
  access: Access;
  hub: EventHub;
  metrics: Metrics;
  maxUploadBytes: number;
}

export function memberKey(session: Session): string {
  return `${session.member.platform}:${session.member.userId}`;
}

function requesterOf(session: Session): Requester {
  const { platform, userId, name, roles } = session.member;
  return { platform, userId, name, roles: [...roles] };
}

function targetOf(session: Session): ReplyTarget {
  return { platform: 'web', chatId: memberKey(session), handle: {} };
}

export class Studio {
  private readonly page = new Map<string, Buffer>();
  /** The options /imagine takes, from the one command list. */
  private readonly optionNames: ReadonlySet<string>;

  constructor(private readonly deps: StudioDeps) {
    const imagine = commandDefinitions(deps.commands.config).find((d) => d.name === 'imagine');
    this.optionNames = new Set(imagine?.options.map((o) => o.name) ?? []);
  }

  async load(): Promise<void> {
    for (const { file } of Object.values(STATIC_FILES)) this.page.set(file, await readFile(path.join(STATIC_DIR, file)));
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.route(req, res);
    } catch (err) {
      if (res.headersSent) {
        res.end();
        return;
      }
      if (err instanceof HttpError) return sendError(res, err);
      this.deps.commands.log.error({ err, platform: 'web', url: req.url?.split('?')[0] }, 'web: request failed');
      sendError(res, new HttpError(500, 'Something went wrong on our side; please try again in a moment.'));
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://studio.invalid');
    const method = req.method ?? 'GET';
    const { access } = this.deps;
    access.checkOrigin(req);

    if (method === 'GET') {
      const asset = STATIC_FILES[url.pathname];
      if (asset) return this.sendAsset(res, asset.file, asset.type);
      if (url.pathname === '/healthz') return sendJson(res, 200, { ok: true });
      if (url.pathname === '/metrics') return send(res, 200, 'text/plain; version=0.0.4; charset=utf-8', this.deps.metrics.render());
      if (url.pathname === '/signin') return this.signInByLink(url, res);
      if (url.pathname === '/api/me') return this.me(req, res);
    }
    if (method === 'POST' && url.pathname === '/api/login') {
      const body = await readJson(req, JSON_LIMIT);
      const { session, cookie } = access.passwordSignIn(body.password, body.name, req.socket.remoteAddress);
      return sendJson(res, 200, this.meBody(session), { 'Set-Cookie': cookie });
    }

    const session = access.session(req);
    if (!session) throw new HttpError(401, 'Please sign in first.');

    if (method === 'GET') {
      if (url.pathname === '/api/events') return this.deps.hub.add(memberKey(session), res);
      if (url.pathname === '/api/admin') return this.admin(session, res);
      if (url.pathname === '/api/gallery') return this.gallery(session, url, res);
      const job = /^\/api\/jobs\/([^/]+)$/.exec(url.pathname);
      if (job) return this.jobInfo(job[1] ?? '', res);
      const img = /^\/img\/([^/]+)\/([^/]+)$/.exec(url.pathname);
      if (img) return this.picture(img[1] ?? '', img[2] ?? '', url.searchParams.has('download'), res);
      throw new HttpError(404, 'There is nothing here.');
    }
    if (method !== 'POST') throw new HttpError(405, 'That method is not used here.');
    access.checkCsrf(req, session);
    switch (url.pathname) {
      case '/api/imagine':
        return this.imagine(req, res, session);
      case '/api/action':
        return this.action(req, res, session);
      case '/api/picture':
        return this.pictureIn(req, res);
      case '/api/logout':
        return sendJson(res, 200, { ok: true }, { 'Set-Cookie': access.clearCookie() });
      default:
        throw new HttpError(404, 'There is nothing here.');
    }
  }

  private sendAsset(res: ServerResponse, file: string, type: string): void {
    const body = this.page.get(file);
    if (!body) throw new HttpError(404, 'There is nothing here.');
    send(res, 200, type, body, { 'Cache-Control': 'no-cache', 'Content-Security-Policy': CSP });
  }

  private signInByLink(url: URL, res: ServerResponse): void {
    try {
      const { cookie } = this.deps.access.linkSignIn(url.searchParams.get('t'));
      // Away from the address bar, so the token is not left in history or bookmarks.
      res.writeHead(303, { Location: '/', 'Set-Cookie': cookie, 'Cache-Control': 'no-store', 'Referrer-Policy': 'no-referrer' });
      res.end();
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      const text = err.message.replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);
      send(res, err.status, 'text/html; charset=utf-8', `<!doctype html><meta charset="utf-8"><title>Sign-in refused</title><p role="alert">${text}</p>`);
    }
  }

  private me(req: IncomingMessage, res: ServerResponse): void {
    const { access } = this.deps;
    const session = access.session(req);
    if (session) return sendJson(res, 200, this.meBody(session));
    if (access.mode === 'local') {
      const opened = access.openLocal();
      return sendJson(res, 200, this.meBody(opened.session), { 'Set-Cookie': opened.cookie });
    }
    sendJson(res, 401, { error: 'Please sign in first.', signIn: access.signInMethods() });
  }

  private meBody(session: Session): Record<string, unknown> {
    const { config, models } = this.deps.commands;
    return {
      member: { name: session.member.name, platform: session.member.platform },
      admin: isAdmin(config, requesterOf(session)),
      csrf: session.csrf,
      mode: this.deps.access.mode,
      models: models().map((m) => m.name),
      notice: this.deps.commands.modelNotice?.() ?? null,
      samplers: SAMPLERS,
      limits: config.limits,
      defaults: { aspect: config.defaults.aspect, steps: config.defaults.steps, guidance: config.defaults.guidance, images: config.defaults.images },
      maxUploadBytes: this.deps.maxUploadBytes,
    };
  }

  /**
   * Finished results, newest first, a page at a time; `before` is the finishedAt where the last
   * page ended. `scope=mine` (default): the member's own (from any platform they are signed in
   * as). `scope=club`: what was posted where other members saw it anyway — Discord server
   * channels and Telegram groups — by anyone; private chats and personal studio sessions stay
   * private, as in /queue. Results deleted with 🗑 are left out; retention sweeps the rest.
   */
  private async gallery(session: Session, url: URL, res: ServerResponse): Promise<void> {
    const { history } = this.deps;
    if (!history) throw new HttpError(404, 'This studio has no gallery.');
    const raw = Number(url.searchParams.get('before'));
    let before = Number.isFinite(raw) && raw > 0 ? raw : Date.now() + 1;
    const { platform, userId } = session.member;
    const club = url.searchParams.get('scope') === 'club';
    const shown = (job: Job) =>
      Boolean(job.result?.images.length) &&
      job.deletedAt === undefined &&
      (club ? postedInPublic(job) : job.requester.platform === platform && job.requester.userId === userId);
    const items: Job[] = [];
    // Bounded work per page: a member with few results in a busy club gets what one scan finds.
    for (let scanned = 0; items.length < GALLERY_PAGE && scanned < GALLERY_SCAN; ) {
      const batch = await history.recentFinished(GALLERY_PAGE * 4, before);
      if (batch.length === 0) {
        before = 0;
        break;
      }
      scanned += batch.length;
      for (const job of batch) {
        before = job.finishedAt ?? job.createdAt;
        if (shown(job)) items.push(job);
        if (items.length === GALLERY_PAGE) break;
      }
    }
    const { config } = this.deps.commands;
    sendJson(res, 200, { items: items.map((job) => jobView(job, config, this.deps.jobs)), next: before > 0 ? before : null });
  }

  /** The admin view: the queue (with cancel-any through the same buttons), models, engine, failures. */
  private admin(session: Session, res: ServerResponse): void {
    const { config, models } = this.deps.commands;
    if (!isAdmin(config, requesterOf(session))) throw new HttpError(403, 'Only admins see this.');
    const { jobs, metrics } = this.deps;
    const snap = jobs.snapshot();
    // The engine's whole LRU where it runs in this process; with Redis workers, the last model drawn.
    const engineLoaded = this.deps.engine?.loadedModels?.();
    const loaded = engineLoaded ?? (metrics.lastModel ? [metrics.lastModel] : []);
    sendJson(res, 200, {
      running: snap.running ? { job: jobView(snap.running.job, config, jobs), step: snap.running.step, total: snap.running.total } : null,
      waiting: snap.waiting.map((w) => ({ job: jobView(w.job, config, jobs), position: w.position, etaSeconds: w.etaSeconds })),
      models: models().map((m) => ({ name: m.name, family: m.family, loaded: loaded.includes(m.name) })),
      provider: this.deps.engine?.provider() ?? null,
      secondsPerStep: metrics.secondsPerStep(),
      busyRatio: Number(metrics.busyRatio().toFixed(4)),
      events: metrics.eventCounts(),
      failures: metrics.failures,
    });
  }

  private async jobInfo(id: string, res: ServerResponse): Promise<void> {
    const job = JOB_ID.test(id) ? await this.deps.jobs.get(id) : undefined;
    if (!job) throw new HttpError(404, 'That result has expired or was deleted.');
    sendJson(res, 200, { job: jobView(job, this.deps.commands.config, this.deps.jobs) });
  }

  private async picture(id: string, which: string, download: boolean, res: ServerResponse): Promise<void> {
    if (!JOB_ID.test(id) || !PICTURE.test(which)) throw new HttpError(404, 'There is no such picture.');
    const job = await this.deps.jobs.get(id);
    const index = which === 'grid' ? 'grid' : Number(which);
    const relative = index === 'grid' ? job?.result?.grid : job?.result?.images[index]?.file;
    if (!job || !relative) throw new HttpError(404, 'There is no such picture (it may have expired).');
    let file: string;
    try {
      // A stored path is ours, but a damaged or hand-edited record must still not leave the data directory.
      file = this.deps.jobs.filePath(relative);
    } catch {
      this.deps.commands.log.warn({ jobId: id, platform: 'web' }, 'web: a stored picture path points outside the data directory; refused');
      throw new HttpError(404, 'There is no such picture.');
    }
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch {
      throw new HttpError(404, 'There is no such picture (it may have expired).');
    }
    const headers: Record<string, string> = { 'Cache-Control': 'private, max-age=86400' };
    if (download) headers['Content-Disposition'] = `attachment; filename="${downloadName(job, index)}"`;
    send(res, 200, 'image/png', body, headers);
  }

  private request(session: Session, fields: Pick<CommandRequest, 'command' | 'via'> & Partial<CommandRequest>): CommandRequest {
    return { ...fields, requester: requesterOf(session), target: targetOf(session) };
  }

  private async imagine(req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
    const body = await readJson(req, JSON_LIMIT);
    const prompt = typeof body.prompt === 'string' ? body.prompt : '';
    const options: Record<string, string | number> = {};
    const given = typeof body.options === 'object' && body.options !== null ? (body.options as Record<string, unknown>) : {};
    for (const [name, value] of Object.entries(given)) {
      if (!this.optionNames.has(name) || name === 'prompt') continue;
      if (typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value))) options[name] = value;
      else throw new HttpError(400, `The ${name} option needs a text or a number.`);
    }
    // A picture to start from makes it img2img: the same parsing and queue, plus the upload.
    const init = typeof body.init === 'string' && body.init ? body.init : undefined;
    if (init) {
      options.init = init;
      if (typeof body.strength === 'string' || typeof body.strength === 'number') options.strength = body.strength;
    }
    const command = init ? 'img2img' : 'imagine';
    const reply = await runCommand(this.request(session, { command, via: 'slash', text: prompt, options }), this.deps.commands);
    this.answer(res, reply);
  }

  private async action(req: IncomingMessage, res: ServerResponse, session: Session): Promise<void> {
    const body = await readJson(req, JSON_LIMIT);
    const action = decodeAction(body.payload);
    if (!action) throw new HttpError(400, 'That button is not valid (it may come from an older page); reload and try again.');
    const command = commandForAction(action.action);
    const reply = await runCommand(this.request(session, { command, via: 'button', action }), this.deps.commands);
    this.answer(res, reply);
  }

  private answer(res: ServerResponse, reply: CommandReply): void {
    const { config } = this.deps.commands;
    sendJson(res, reply.ok ? 200 : 422, {
      ok: reply.ok,
      text: reply.text,
      ...(reply.parts ? { parts: reply.parts } : {}),
      ...(reply.queued ? { job: jobView(reply.queued.job, config, this.deps.jobs) } : {}),
      ...(reply.deleteJob ? { deleted: reply.deleteJob.id } : {}),
      ...(reply.ok ? {} : { error: reply.text }),
    });
  }

  /**
   * A dropped or pasted picture: kept as an upload (img2img can start from it) and, for a PNG
   * from an A1111-style tool, its parameters ("PNG Info", read with the engine's reader).
   */
  private async pictureIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, this.deps.maxUploadBytes);
    let png: Buffer;
    let size: { width: number; height: number };
    try {
      const normalised = await sharp(body, { limitInputPixels: MAX_UPLOAD_PIXELS })
        .rotate()
        .png()
        .toBuffer({ resolveWithObject: true });
      png = normalised.data;
      size = { width: normalised.info.width, height: normalised.info.height };
    } catch {
      throw new HttpError(415, 'That file is not a picture the studio can read (PNG, JPEG or WebP, at most 4096×4096).');
    }
    const id = newJobId(12);
    const file = path.join(this.deps.commands.config.dataDir, uploadFile(id));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, png);
    const upload = { id, ...size };
    const chunk = body.subarray(0, 8).equals(PNG_SIGNATURE) ? readTextChunks(body).find((c) => c.keyword === 'parameters') : undefined;
    const parsed = chunk ? parseInfoText(chunk.text) : undefined;
    if (!chunk || !parsed) return sendJson(res, 200, { upload, found: false });
    sendJson(res, 200, { upload, found: true, infoText: chunk.text, prompt: parsed.prompt, negativePrompt: parsed.negativePrompt, params: parsed.params });
  }
}
