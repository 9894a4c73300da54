// A reply with copy-paste parts (commands/types.ts ReplyPart) drawn by the real adapter through
// real grammY: the command layer is stubbed to answer /help with parts, since which commands fill
// `parts` is the command layer's business; what is checked is Telegram's side of it.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CommandReply } from '../commands/types.js';
import { startTelegram } from '../src/adapters/telegram/index.js';
import type { AdapterHandle } from '../src/adapters/types.js';
import { FakeBotApi, type JsonObject } from './fakes/telegram/server.js';
import { createHarness, type Harness } from './helpers/harness.js';

const PROMPT = 'a *bold* _fox_ ~~in~~ <snow> & `ice`';
let reply: CommandReply | undefined;

vi.mock('../commands/index.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../commands/index.js')>();
  return {
    ...original,
    runCommand: (...args: Parameters<typeof original.runCommand>) =>
      args[0].command === 'help' && reply ? Promise.resolve(reply) : original.runCommand(...args),
  };
});

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
  reply = undefined;
});

async function setup(): Promise<{ fake: FakeBotApi; harness: Harness; adapter: AdapterHandle }> {
  const fake = await FakeBotApi.start();
  const harness = await createHarness({ config: { telegram: { apiRoot: fake.apiRoot, privateEditMs: 250, groupEditMs: 250 } } });
  const adapter = await startTelegram({ config: harness.config, jobs: harness.jobs, commands: harness.commands, log: harness.log, token: fake.token });
  await fake.pollWaiting();
  cleanup = async () => {
    fake.releaseAll();
    await adapter.stop();
    await harness.close();
    await fake.close();
  };
  return { fake, harness, adapter };
}

describe('Telegram: copy-paste parts', () => {
  it('sends code parts as <pre> in HTML mode, so the prompt copies exactly as typed, split under 4096', async () => {
    const { fake } = await setup();
    const command = `/imagine ${PROMPT} --seed 5 --steps 20`;
    const long = Array.from({ length: 500 }, (_, i) => `Steps: ${i}, <x> & *y*`).join('\n');
    reply = { ok: true, visibility: 'private', text: `Copy:\n${command}\n${long}`, parts: [{ text: 'Copy:' }, { text: command, code: true }, { text: long, code: true }] };
    const alice = fake.user(42, 'Alice');
    const request = fake.sendText(fake.privateChat(alice), alice, '/help');
    const first = await fake.waitFor(
      (c) => c.method === 'sendMessage' && c.status === 200 && Number((c.params.reply_parameters as JsonObject | undefined)?.message_id) === request.message_id,
      20_000,
      'the reply',
    );
    expect(first.params.parse_mode).toBe('HTML');
    const stored = fake.messageOf(first);
    const pre = (stored.entities as JsonObject[]).find((e) => e.type === 'pre')!;
    expect(String(stored.text).slice(Number(pre.offset), Number(pre.offset) + Number(pre.length))).toBe(command);
    // The long part went out in further pieces, each accepted (Telegram's limit holds after parsing).
    await expect.poll(() => fake.callsOf('sendMessage').filter((c) => c.params.parse_mode === 'HTML').length, { timeout: 20_000 }).toBeGreaterThan(1);
    expect(fake.callsOf('sendMessage').every((c) => c.status === 200)).toBe(true);
  });
});
