// The fake Discord gateway: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeat ACKs, dispatches
// with op 0 and increasing sequence numbers, RECONNECT → RESUME → replay → RESUMED, outages
// (the socket drops and connections are refused for a while; dispatches meanwhile are kept
// for the replay) and INVALID_SESSION (the session is gone: what it missed is lost).
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { readyJson, type FakeIds } from './payloads.js';

interface Dispatch {
  op: 0;
  t: string;
  s: number;
  d: unknown;
}

interface Session {
  id: string;
  seq: number;
  log: Dispatch[];
  socket?: WebSocket;
  /** true between READY/RESUMED and the socket closing: dispatches go out at once. */
  live: boolean;
}

export interface GatewayOptions {
  token: string;
  ids: FakeIds;
  heartbeatIntervalMs: number;
  /** The GUILD_CREATE payload as the guild is now (channel permissions change in tests). */
  guild: () => unknown;
  url: () => string;
}

export interface GatewayFrame {
  at: number;
  op: number;
  d: unknown;
}

export class FakeGateway {
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #opts: GatewayOptions;
  #sessionCount = 0;
  #session: Session | undefined;
  /** Frames the client sent (IDENTIFY, RESUME, heartbeats), for assertions. */
  readonly received: GatewayFrame[] = [];
  identifies = 0;
  resumes = 0;
  #readyWaiters: (() => void)[] = [];
  /** While true, new connections are refused (a network outage). */
  #down = false;
  /** The next RESUME is answered with INVALID_SESSION (d: false): the session cannot be resumed. */
  #sessionLost = false;
  /** Sessions READY was sent for, including after an INVALID_SESSION. */
  readonly sessions: string[] = [];

  constructor(opts: GatewayOptions) {
    this.#opts = opts;
    this.#wss.on('connection', (ws) => this.#onConnection(ws));
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '').split('?')[0];
    if (this.#down || (path !== '/gateway' && path !== '/gateway/')) {
      socket.destroy();
      return;
    }
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#wss.emit('connection', ws, req));
  }

  /** Send (or, while the client is away, keep for replay) a dispatch; returns its sequence number. */
  dispatch(t: string, d: unknown): number {
    const session = this.#session;
    if (!session) throw new Error('fake gateway: no session yet (the client has not identified)');
    const frame: Dispatch = { op: 0, t, s: ++session.seq, d };
    session.log.push(frame);
    if (session.live && session.socket?.readyState === WebSocket.OPEN) session.socket.send(JSON.stringify(frame));
    return frame.s;
  }

  /** op 7: the client drops the socket and resumes on resume_gateway_url. */
  requestReconnect(): void {
    const socket = this.#session?.socket;
    if (!socket) throw new Error('fake gateway: no connected client');
    if (this.#session) this.#session.live = false;
    socket.send(JSON.stringify({ op: 7, d: null, s: null, t: null }));
  }

  /**
   * The network goes away: the socket drops without a close frame and reconnects are refused
   * until restore(). Dispatches in between are kept, as Discord keeps them for a RESUME.
   */
  outage(): void {
    this.#down = true;
    if (this.#session) this.#session.live = false;
    for (const ws of this.#wss.clients) ws.terminate();
  }

  restore(): void {
    this.#down = false;
  }

  /** The session expires on Discord's side: the next RESUME gets op 9 and events missed are lost. */
  loseSession(): void {
    this.#sessionLost = true;
  }

  /** Resolves at the next READY or RESUMED sent. */
  nextReady(): Promise<void> {
    return new Promise((resolve) => this.#readyWaiters.push(resolve));
  }

  get connected(): boolean {
    return this.#session?.live === true && this.#session.socket?.readyState === WebSocket.OPEN;
  }

  close(): void {
    for (const ws of this.#wss.clients) ws.terminate();
    this.#wss.close();
  }

  #onConnection(ws: WebSocket): void {
    ws.send(JSON.stringify({ op: 10, d: { heartbeat_interval: this.#opts.heartbeatIntervalMs }, s: null, t: null }));
    ws.on('message', (raw) => this.#onFrame(ws, raw));
    ws.on('close', () => {
      if (this.#session?.socket === ws) this.#session.live = false;
    });
    ws.on('error', () => undefined);
  }

  #onFrame(ws: WebSocket, raw: RawData): void {
    let frame: { op: number; d: unknown };
    try {
      frame = JSON.parse(raw.toString()) as { op: number; d: unknown };
    } catch {
      ws.close(4002, 'Decode error');
      return;
    }
    this.received.push({ at: Date.now(), op: frame.op, d: frame.op === 1 ? frame.d : redactToken(frame.d) });
    switch (frame.op) {
      case 1:
        ws.send(JSON.stringify({ op: 11, d: null, s: null, t: null }));
        return;
      case 2:
        this.#identify(ws, frame.d as { token?: string });
        return;
      case 6:
        this.#resume(ws, frame.d as { token?: string; session_id?: string; seq?: number });
        return;
      default:
        return;
    }
  }

  #identify(ws: WebSocket, d: { token?: string }): void {
    if (d.token !== this.#opts.token) {
      ws.close(4004, 'Authentication failed.');
      return;
    }
    this.identifies++;
    const session: Session = { id: `sess${++this.#sessionCount}`, seq: 0, log: [], socket: ws, live: true };
    this.#session = session;
    this.sessions.push(session.id);
    this.dispatch('READY', readyJson(this.#opts.ids, session.id, this.#opts.url()));
    this.dispatch('GUILD_CREATE', this.#opts.guild());
    this.#notifyReady();
  }

  #resume(ws: WebSocket, d: { token?: string; session_id?: string; seq?: number }): void {
    const session = this.#session;
    if (d.token !== this.#opts.token) {
      ws.close(4004, 'Authentication failed.');
      return;
    }
    if (!session || session.id !== d.session_id || this.#sessionLost) {
      // What the old session buffered is gone with it, as on Discord.
      this.#sessionLost = false;
      if (session) session.live = false;
      this.#session = undefined;
      ws.send(JSON.stringify({ op: 9, d: false, s: null, t: null }));
      return;
    }
    this.resumes++;
    session.socket = ws;
    // Like Discord: replay what the client missed, in order, then RESUMED.
    const missed = session.log.filter((f) => f.s > (d.seq ?? 0));
    for (const f of missed) ws.send(JSON.stringify(f));
    session.live = true;
    this.dispatch('RESUMED', {});
    this.#notifyReady();
  }

  #notifyReady(): void {
    const waiters = this.#readyWaiters;
    this.#readyWaiters = [];
    for (const w of waiters) w();
  }
}

function redactToken(d: unknown): unknown {
  if (d && typeof d === 'object' && 'token' in d) return { ...(d as object), token: '[token]' };
  return d;
}
