// Kill-and-restart soak on Telegram: the bot runs as a real child process (real store on a SQLite
// file, real job service and adapter, scripted engine) against the fake Bot API, which outlives
// every life. Members keep writing while the bot is SIGKILLed at random (seeded) moments and
// started again. Every request must be answered exactly once; the one duplicate allowed is the
// unavoidable kind: Telegram accepted the photo but the process died before it could record that
// (its answer never arrived, or the kill came within one store write of it). `npm run soak` runs a
// longer version and prints the counts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeBotApi, type JsonObject, type RecordedCall, type TgMessage } from './fakes/telegram/server.js';
import { seededUniform } from './fixtures/onnx/reference.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const CHILD = path.join(here, 'fixtures', 'telegram-soak-child.ts');

const LONG = process.env.SOAK_LONG === '1';
const PLAN = LONG ? { requests: 150, members: 12, kills: 40, seed: 20261130 } : { requests: 32, members: 6, kills: 10, seed: 8 };
/** How long after a life is ready it may be killed (ms): from "at once" to well after a job's delivery. */
const KILL_WINDOW_MS: [number, number] = [50, 1_200];
const REQUEST_GAP_MS: [number, number] = [30, 300];
const SETTLE_TIMEOUT_MS = 15_000;
/** Telegram's round trip, spent after it has acted (so a kill meanwhile loses only the answer). */
const LATENCY_MS = 120;

interface Life {
  child: ChildProcess;
  lines: string[];
  killedAt?: number;
  /** When the test saw it gone: an answer written between killedAt and this was never read. */
  exitedAt?: number;
  ready: Promise<void>;
  exited: Promise<void>;
}

function startLife(dataDir: string, fake: FakeBotApi): Life {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, fake.apiRoot, fake.token], {
    cwd: path.resolve(here, '..'),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let buffered = '';
  let stderr = '';
  let markReady = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      lines.push(line);
      if (line.includes('soak child ready')) markReady();
    }
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('exit', (code, signal) => {
      life.exitedAt = Date.now();
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`a bot life ended by itself (${signal ?? code}): ${stderr.slice(-2000)}`));
    });
  });
  // A life that dies before it is ready fails the soak through `exited`.
  exited.catch(() => markReady());
  const life: Life = { child, lines, ready, exited };
  return life;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe(`Telegram kill-and-restart soak (${PLAN.requests} requests, ${PLAN.members} members, ${PLAN.kills} SIGKILLs)`, () => {
  it('answers every accepted request exactly once; nothing lost, nothing failed for a restart', async () => {
    const fake = await FakeBotApi.start({ latencyMs: LATENCY_MS });
    const root = await mkdtemp(path.join(tmpdir(), 'soak-tg-'));
    const dataDir = path.join(root, 'data');
    let current: Life | undefined;
    cleanup = async () => {
      current?.child.kill('SIGKILL');
      await current?.exited.catch(() => undefined);
      fake.releaseAll();
      await fake.close();
      await rm(root, { recursive: true, force: true });
    };
    const random = seededUniform(PLAN.seed);
    const between = ([lo, hi]: [number, number]) => Math.round(lo + random() * (hi - lo));

    const members = Array.from({ length: PLAN.members }, (_, i) => fake.user(5000 + i, `Member${i}`, `member${i}`));
    const group = fake.groupChat(-100777);
    const requests: TgMessage[] = [];
    const sending = (async () => {
      for (let i = 0; i < PLAN.requests; i++) {
        await sleep(between(REQUEST_GAP_MS));
        const member = members[Math.floor(random() * members.length)]!;
        // Most write privately; some in the club's group.
        const inGroup = random() < 0.3;
        const text = inGroup ? `/imagine soak ${i} --seed ${i}` : `soak ${i} --seed ${i}`;
        requests.push(fake.sendText(inGroup ? group : fake.privateChat(member), member, text));
      }
    })();

    const lives: Life[] = [];
    for (let k = 0; k < PLAN.kills; k++) {
      current = startLife(dataDir, fake);
      lives.push(current);
      await Promise.race([current.ready, current.exited]);
      await sleep(between(KILL_WINDOW_MS));
      current.killedAt = Date.now();
      current.child.kill('SIGKILL');
      await current.exited;
    }
    await sending;
    current = startLife(dataDir, fake);
    lives.push(current);
    await Promise.race([current.ready, current.exited]);

    const photosFor = (request: TgMessage): RecordedCall[] =>
      fake
        .callsOf('sendPhoto')
        .filter(
          (c) =>
            c.status === 200 &&
            Number(c.params.chat_id) === request.chat.id &&
            Number((c.params.reply_parameters as JsonObject | undefined)?.message_id) === request.message_id,
        );
    const answersFor = (request: TgMessage): string[] =>
      [...fake.messages.values()]
        .filter((m) => m.from !== undefined && (m.reply_to_message as TgMessage | undefined)?.message_id === request.message_id && m.chat.id === request.chat.id)
        .map((m) => String(m.text ?? ''));
    /** How long before its life was killed the bot had this call's answer (undefined: never, or not killed). */
    const answerLead = (call: RecordedCall): number | undefined => {
      if (call.answeredAt === undefined) return 0;
      const life = lives.find((l) => l.exitedAt !== undefined && l.exitedAt >= call.answeredAt!);
      if (life?.killedAt === undefined) return undefined;
      return Math.max(0, life.killedAt - call.answeredAt);
    };
    /**
     * Message ids the bot had recorded (in any life) when it was killed: a photo it noted as sent,
     * a status message it kept in its inbox. A message Telegram made that is not among them was cut
     * off by the kill (its answer never arrived, or came while its record was being written): the
     * unavoidable case. That the record is written first thing is checked in telegram.test.ts.
     */
    const recordedIds = (what: string) =>
      new Set(
        lives.flatMap((l) =>
          l.lines.filter((line) => line.includes(what)).map((line) => String((JSON.parse(line) as { messageId?: unknown }).messageId)),
        ),
      );
    const unavoidable = (call: RecordedCall, what: string): boolean => !recordedIds(what).has(String(fake.messageOf(call).message_id));
    /**
     * A status message whose sending was cut off by a kill: Telegram made it, the bot never learnt
     * its id, so nothing can edit or remove it (the unavoidable case again, for a status message).
     */
    const orphaned = (m: TgMessage): boolean =>
      fake
        .callsOf('sendMessage')
        .some(
          (c) =>
            c.status === 200 &&
            Number(c.params.chat_id) === m.chat.id &&
            fake.messageOf(c).message_id === m.message_id &&
            unavoidable(c, 'telegram: status message id kept'),
        );
    const stale = () =>
      [...fake.messages.values()].filter(
        (m) => m.from !== undefined && /^(⏳|Queued|Drawing|Resumed|Back in the queue)/.test(String(m.text ?? '')) && !orphaned(m),
      );
    const orphans = () => [...fake.messages.values()].filter((m) => m.from !== undefined && String(m.text ?? '').startsWith('⏳') && orphaned(m));
    // The last life runs until every request has its picture.
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (Date.now() < deadline && requests.some((r) => photosFor(r).length === 0)) await sleep(200);
    // Time for the last status messages to go (a round trip or two).
    await sleep(1_500);
    current.child.kill('SIGKILL');
    await current.exited;

    const counts = { requests: requests.length, deliveredOnce: 0, unavoidableDuplicates: 0, avoidableDuplicates: 0, lost: 0, refused: 0 };
    const problems: string[] = [];
    for (const request of requests) {
      const photos = photosFor(request);
      const refusal = answersFor(request).find((t) => /^Sorry|crashed|restart/i.test(t));
      if (photos.length === 1) counts.deliveredOnce += 1;
      else if (photos.length === 0 && refusal) {
        counts.refused += 1;
        problems.push(`"${String(request.text)}" refused: ${refusal}`);
      } else if (photos.length === 0) {
        counts.lost += 1;
        problems.push(`"${String(request.text)}" lost`);
      } else {
        // Every photo but the last must have been cut off by a kill before it could be recorded.
        if (photos.slice(0, -1).every((p) => unavoidable(p, 'telegram: photo accepted and noted'))) counts.unavoidableDuplicates += photos.length - 1;
        else {
          counts.avoidableDuplicates += photos.length - 1;
          const timing = photos.map((p) => {
            const lead = answerLead(p);
            return lead === undefined ? 'answered, never killed after' : `answered ${lead} ms before its life was killed`;
          });
          problems.push(`"${String(request.text)}" sent ${photos.length} times although the bot could have recorded it (${timing.join('; ')})`);
        }
      }
    }
    const leftovers = stale().map((m) => {
      const made = fake.calls.find((c) => c.status === 200 && c.method === 'sendMessage' && Number(c.params.chat_id) === m.chat.id && fake.messageOf(c).message_id === m.message_id);
      const edits = fake.callsOf('editMessageText').filter((c) => Number(c.params.chat_id) === m.chat.id && Number(c.params.message_id) === m.message_id);
      return `${m.chat.id}:${m.message_id} "${String(m.text)}" (sent ${made?.answeredAt === undefined ? 'unanswered' : 'answered'}; ${edits.map((e) => `${e.status}`).join(',')})`;
    });
    const report = { ...counts, lives: lives.length, staleStatusMessages: leftovers.length, orphanedPlaceholders: orphans().length };
    console.log(`telegram soak: ${JSON.stringify(report)}`);

    problems.push(...leftovers.map((l) => `status message left behind: ${l}`));
    if (problems.length > 0) {
      // The lives' logs, for whoever has to find out why.
      const dump = path.join(tmpdir(), `soak-telegram-${PLAN.seed}.log`);
      const photos = fake.callsOf('sendPhoto').map(
        (c) => `photo ${c.status} chat ${String(c.params.chat_id)} replyTo ${String((c.params.reply_parameters as JsonObject | undefined)?.message_id)} answeredAt ${c.answeredAt ?? '-'} id ${c.status === 200 ? fake.messageOf(c).message_id : '-'}`,
      );
      const killLines = lives.map((l, i) => `life ${i} killed at ${l.killedAt ?? "-"}, gone at ${l.exitedAt ?? "-"}`);
      await writeFile(dump, [...killLines, ...photos, ...lives.map((l, i) => l.lines.map((line) => `${i} ${line}`).join('\n'))].join('\n'));
      problems.push(`logs of every life: ${dump}`);
    }
    expect(problems).toEqual([]);
    expect(counts.lost).toBe(0);
    expect(counts.refused).toBe(0);
    expect(counts.avoidableDuplicates).toBe(0);
  }, LONG ? 900_000 : 120_000);
});
