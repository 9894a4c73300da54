import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../src/config/load.js';
import { pino } from 'pino';
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

  describe('every encoding a token travels in', () => {
    const secretHalf = TELEGRAM.slice(TELEGRAM.indexOf(':') + 1);
    /** Each form as it shows up in real error text; the token's base64 sits at all three alignments. */
    const forms: [string, string][] = [
      ['raw', `token ${TELEGRAM} in a sentence`],
      ['bot<token> in a URL', `GET https://api.telegram.org/bot${TELEGRAM}/getUpdates`],
      ['URL-encoded', `redirect=https%3A%2F%2Fapi.telegram.org%2Fbot${encodeURIComponent(TELEGRAM)}%2FgetMe`],
      ['URL-encoded, lowercase escape', `q=${TELEGRAM.replace(':', '%3a')}&x=1`],
      ['secret half alone', `Unauthorized: invalid token part "${secretHalf}"`],
      ['base64', `authorization: Basic ${Buffer.from(`u:${TELEGRAM}`).toString('base64')}`],
      ['base64, shifted one byte', `body=${Buffer.from(`x${TELEGRAM}y`).toString('base64')}`],
      ['base64, shifted two bytes', `body=${Buffer.from(`xy${TELEGRAM}`).toString('base64')}`],
      ['base64url of bot<token>', `state=${Buffer.from(`/bot${TELEGRAM}/`).toString('base64url')}`],
    ];
    const leaks = (text: string) =>
      [TELEGRAM, encodeURIComponent(TELEGRAM), TELEGRAM.replace(':', '%3a'), secretHalf].filter((f) => text.includes(f)).length +
      [`u:${TELEGRAM}`, `x${TELEGRAM}y`, `xy${TELEGRAM}`, `/bot${TELEGRAM}/`].filter((plain) => {
        // A base64 form leaks when its middle (the token's own bytes) survives.
        const b64 = Buffer.from(plain).toString('base64');
        const url = Buffer.from(plain).toString('base64url');
        return text.includes(b64.slice(8, 40)) || text.includes(url.slice(8, 40));
      }).length;

    it.each(forms)('scrubs the token given as: %s', (_name, text) => {
      // The form really carries the token: the same line logged without redaction leaks it.
      const raw: string[] = [];
      const plain = pino({ level: 'info' }, { write: (line: string) => void raw.push(line) });
      plain.error({ err: new Error(text) }, text);
      expect(leaks(raw.join(''))).toBeGreaterThan(0);

      const { log, lines } = capture();
      log.error({ err: new Error(text), detail: { text } }, text);
      expect(leaks(lines.join('\n'))).toBe(0);
      expect(lines.join('\n')).toContain('[redacted]');
    });

    it('scrubs the URL-encoded and secret-half forms by shape even when the token is not registered', () => {
      const other = '5550001111:AAFr7zXk3Jq9mLp0Wc2Vb8Nn6Tt4Yy1Hh5G';
      expect(redactSecrets(`x=${other.replace(':', '%3A')}`)).toBe('x=[redacted]');
      expect(redactSecrets(`part ${other.slice(11)} end`)).toBe('part [redacted] end');
    });
  });
});
