import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { createLogger, redactSecrets } from '../src/logging.js';

// Fake tokens in the real shapes (none of these ever worked anywhere).
const TELEGRAM = '7712345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawZ';
const DISCORD = 'MTExMjIzMzQ0NTU2Njc3ODg5OQ.GaBcDe.Zk3abcdefghijklmnopqrstuvwxyz0123456';
const INTERACTION = 'aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDpmYWtlLXRva2Vu';
const WEBHOOK = 'wHkT0k3n-abcdefghijklmnopqrstuvwxyz_0123456789';
/** A configured secret that matches no pattern: only the exact-value scrub can catch it. */
const ODD_SECRET = 'club-secret-Öz~42';

function capture() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(line);
      done();
    },
  });
  const config = defaultConfig({ logLevel: 'debug', secrets: { telegramToken: TELEGRAM, discordToken: ODD_SECRET } });
  return { log: createLogger(config, sink), lines };
}

function expectClean(text: string): void {
  for (const secret of [TELEGRAM, DISCORD, INTERACTION, WEBHOOK, ODD_SECRET, 'AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawZ']) {
    expect(text).not.toContain(secret);
  }
}

describe('logging', () => {
  it('keeps tokens out of messages, error fields, stacks, URLs and nested objects', () => {
    const { log, lines } = capture();
    const err = new Error(
      `request to https://api.telegram.org/bot${TELEGRAM}/sendPhoto failed; auth Bot ${DISCORD}; key ${ODD_SECRET}`,
    ) as Error & { url?: string; method?: string; requestBody?: unknown; status?: number };
    err.url = `https://discord.com/api/v10/interactions/1234567890123/${INTERACTION}/callback`;
    err.method = 'POST';
    err.status = 401;
    err.requestBody = { files: [{ name: 'grid.png', data: Buffer.alloc(2048) }], json: { content: 'x' } };
    err.stack = `${err.stack}\n    at fetch (https://discord.com/api/v10/webhooks/998877/${WEBHOOK}/messages/@original)`;
    err.cause = new Error(`inner: /file/bot${TELEGRAM}/photos/1.jpg`);

    const jobLog = log.child({ jobId: 'k3x9q2ab', platform: 'telegram', userId: '4242' });
    jobLog.error({ err }, 'delivery failed for %s', `https://api.telegram.org/bot${TELEGRAM}/getMe`);
    jobLog.warn(
      {
        token: DISCORD,
        bot: { token: TELEGRAM, username: 'club_bot' },
        headers: { authorization: `Bot ${DISCORD}` },
        request: { headers: { authorization: `Bot ${DISCORD}` }, url: `https://x/webhooks/1/${WEBHOOK}` },
        note: `a string mentioning ${ODD_SECRET} in passing`,
        list: [`bot${TELEGRAM}`, { deep: { deeper: DISCORD } }],
      },
      'odd objects',
    );
    log.error(err); // an Error as the only argument: its message becomes msg
    log.info({ config: defaultConfig({ secrets: { discordToken: DISCORD } }) }, 'effective config');

    expect(lines.length).toBe(4);
    const all = lines.join('\n');
    expectClean(all);
    // The image bytes in a Discord error's request body must not be dumped either.
    expect(all).not.toMatch(/"data":\[0,0,0/);

    const first = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    expect(first).toMatchObject({ jobId: 'k3x9q2ab', platform: 'telegram', userId: '4242', level: 50 });
    const errOut = first.err as Record<string, unknown>;
    // What is useful for debugging survives the scrub.
    expect(errOut.message).toContain('https://api.telegram.org/bot[redacted]/sendPhoto failed');
    expect(errOut.url).toBe('https://discord.com/api/v10/interactions/1234567890123/[redacted]/callback');
    expect(errOut.status).toBe(401);
    expect(errOut.stack).toContain('webhooks/998877/[redacted]/messages');
    expect(String(first.msg)).toBe('delivery failed for https://api.telegram.org/bot[redacted]/getMe');

    const second = JSON.parse(lines[1] ?? '{}') as Record<string, unknown>;
    expect(second.jobId).toBe('k3x9q2ab');
    expect((second.bot as Record<string, unknown>).username).toBe('club_bot');
  });

  it('scrubs tokens from child bindings too', () => {
    const { log, lines } = capture();
    log.child({ jobId: 'j1', endpoint: `https://api.telegram.org/bot${TELEGRAM}/` }).info('hello');
    expectClean(lines.join('\n'));
    expect(lines[0]).toContain('"jobId":"j1"');
  });

  it('honours the configured level', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const log = createLogger(defaultConfig({ logLevel: 'warn' }), sink);
    log.info('not shown');
    log.warn('shown');
    expect(lines.join('')).not.toContain('not shown');
    expect(lines.join('')).toContain('shown');
  });

  it('redactSecrets scrubs each token shape and leaves ordinary text alone', () => {
    expect(redactSecrets(`GET /bot${TELEGRAM}/getUpdates`)).toBe('GET /bot[redacted]/getUpdates');
    expect(redactSecrets(`token=${DISCORD}!`)).toBe('token=[redacted]!');
    expect(redactSecrets(`/api/v10/webhooks/123/${WEBHOOK}/messages/@original`)).toBe(
      '/api/v10/webhooks/123/[redacted]/messages/@original',
    );
    expect(redactSecrets(`interactions/55/${INTERACTION}/callback?with_response=false`)).toBe(
      'interactions/55/[redacted]/callback?with_response=false',
    );
    const ordinary = 'job k3x9q2ab: 4 images 512x768, seed 1234567890, 20 steps, file data/ab/cd.png, v1:rr:k3x9q2ab:2';
    expect(redactSecrets(ordinary)).toBe(ordinary);
  });
});
