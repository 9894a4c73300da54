// The web studio: a third adapter beside Discord and Telegram, on the same commands, queue and
// store. It serves a static page (plain HTML, CSS and ES modules; no build step), a JSON API
// that turns prompts and button payloads into command requests, and an event stream per member.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { statusText } from '../../../commands/index.js';
import type { Engine } from '../../../engine/types.js';
import type { JobEvent, JobRepo } from '../../jobs/types.js';
import { registerSecret } from '../../logging.js';
import type { AdapterDeps, AdapterHandle } from '../types.js';
import { Access, accessMode, localAdminConfig } from './access.js';
import { EventHub } from './events.js';
import { Metrics } from './metrics.js';
import { Studio } from './server.js';
import { startUploadSweeps } from './uploads.js';
import { jobView } from './view.js';

export type WebDeps = Omit<AdapterDeps, 'token'> & {
  /** For the admin view's "provider in use". */
  engine?: Pick<Engine, 'provider' | 'loadedModels'>;
  /** For the gallery (the store's job records). */
  history?: Pick<JobRepo, 'recentFinished'>;
  /** Clock for sessions, links and the password back-off (tests move it). */
  now?: () => number;
};

export interface WebHandle extends AdapterHandle {
  readonly platform: 'web';
  /** Where the studio listens, e.g. http://127.0.0.1:7860 (the real port when web.port is 0). */
  readonly url: string;
}

/** Starts listening; rejects (with a message for the operator) when access is unsafe or the port is taken. */
export async function startWeb(deps: WebDeps): Promise<WebHandle> {
  const { config, jobs } = deps;
  const log = deps.log.child({ platform: 'web' });
  registerSecret(config.secrets.webPassword);
  registerSecret(config.secrets.webSecret);
  const access = new Access(config, deps.now);
  const commands = access.mode === 'local' ? { ...deps.commands, config: localAdminConfig(config), log } : { ...deps.commands, log };
  const hub = new EventHub();
  const metrics = new Metrics(jobs);
  const studio = new Studio({
    commands,
    jobs,
    access,
    hub,
    metrics,
    maxUploadBytes: config.web.maxUploadBytes,
    ...(deps.engine ? { engine: deps.engine } : {}),
    ...(deps.history ? { history: deps.history } : {}),
  });
  await studio.load();

  const onEvent = (event: JobEvent) => {
    metrics.observe(event);
    const { job } = event;
    if (job.target.platform !== 'web') return;
    // The pictures are on disk and served by URL: for the studio, done is delivered.
    if (event.type === 'done') void deliver(job.id);
    // A queue move announces every waiting job: build views only for members who are watching.
    if (!hub.has(job.target.chatId)) return;
    try {
      const preview = event.type === 'progress' && event.preview ? `data:image/png;base64,${event.preview.png.toString('base64')}` : undefined;
      hub.send(job.target.chatId, 'job', {
        type: event.type,
        job: jobView(job, commands.config, jobs, event),
        statusText: statusText(event),
        ...(event.type === 'progress' ? { step: event.step, total: event.total } : {}),
        ...(preview ? { preview } : {}),
      });
    } catch (err) {
      log.error({ err, jobId: job.id }, 'web: job event not drawn');
    }
  };
  const deliver = (jobId: string) =>
    jobs.markDelivered(jobId).catch((err: unknown) => log.warn({ err, jobId }, 'web: delivery could not be recorded'));
  const unsubscribe = jobs.on(onEvent);

  const server: Server = createServer((req, res) => void studio.handle(req, res));
  // A slow or stalled client must not hold a socket forever (the event stream has its heartbeat).
  server.headersTimeout = 20_000;
  server.requestTimeout = 60_000;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.web.port, config.web.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    unsubscribe();
    hub.close();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new Error(`web: port ${config.web.port} on ${config.web.host} is in use; set web.port (or WEB_PORT) to a free one.`);
    throw err;
  }
  server.on('error', (err) => log.error({ err }, 'web: server error'));
  const { port } = server.address() as AddressInfo;
  const host = config.web.host.includes(':') ? `[${config.web.host}]` : config.web.host;
  const url = `http://${host}:${port}`;

  for (const job of await jobs.pendingDeliveries('web')) await deliver(job.id);
  const stopSweeps = startUploadSweeps(config, log);
  log.info({ url, access: access.mode }, 'web: studio listening');

  let stopped = false;
  return {
    platform: 'web',
    url,
    async stop() {
      if (stopped) return;
      stopped = true;
      stopSweeps();
      unsubscribe();
      hub.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      log.info('web: stopped');
    },
  };
}

/** Why the studio may not start with this config (an open studio on a public address), or undefined. */
export function webAccessProblem(config: WebDeps['config']): string | undefined {
  try {
    accessMode(config);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}
