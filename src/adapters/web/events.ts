// Server-sent events: each open page gets its member's job events as they happen. A page that
// loses the stream (a restart) reconnects by itself and asks for its jobs again.
import type { ServerResponse } from 'node:http';

/** EventSource reconnects after this many milliseconds (its default of ~3 s feels broken). */
const RETRY_MS = 500;
/** A comment line now and then keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 15_000;

interface Client {
  memberKey: string;
  res: ServerResponse;
}

export class EventHub {
  private readonly clients = new Set<Client>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor() {
    this.heartbeat = setInterval(() => {
      for (const c of this.clients) c.res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  add(memberKey: string, res: ServerResponse): void {
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
      'X-Content-Type-Options': 'nosniff',
    });
    res.write(`retry: ${RETRY_MS}\n: connected\n\n`);
    const client = { memberKey, res };
    this.clients.add(client);
    res.on('close', () => this.clients.delete(client));
  }

  /** True when at least one page of this member is listening. */
  has(memberKey: string): boolean {
    for (const c of this.clients) if (c.memberKey === memberKey) return true;
    return false;
  }

  send(memberKey: string, event: string, data: unknown): void {
    let line: string | undefined;
    for (const c of this.clients) {
      if (c.memberKey !== memberKey) continue;
      line ??= `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
      c.res.write(line);
    }
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }
}
