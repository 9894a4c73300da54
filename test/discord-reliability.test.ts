// Discord's rules the bot must live with, end to end against the fake: results that ping,
// status messages that never stay "Queued" with live buttons, privacy decided before the
// acknowledgement, follow-ups after a deferral, permissions for 🔁, upload limits after the
// token's life, repeated reactions, and gateway outages.
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeAction } from '../commands/codec.js';
import { DONE_NOTE, HANDOVER_NOTE, POSTING_NOTE } from '../src/adapters/discord/follow.js';
import { NOT_STARTED_NOTE } from '../src/adapters/discord/interactions.js';
import { PERM } from './fakes/discord/index.js';
import {
  boot,
  button,
  CALLBACK,
  CHANNEL_DELETE,
  CHANNEL_POST,
  deliveredAs,
  DELETE_ORIGINAL,
  EDIT_ORIGINAL,
  eventually,
  FOLLOW_UP,
  forToken,
  isResult,
  parametersOf,
  resultMessageId,
  restart,
  resultPost,
  stopBooted,
  withFile,
} from './helpers/discord-bot.js';

afterEach(stopBooted);

const reactor = { id: '777777777777777011', username: 'eve' };

describe('discord reliability', () => {
  it('a slow command that turns out a refusal: the public deferral gets a neutral note first, then the reason privately', async () => {
    const { h, fake } = await boot({ queue: { perMemberPending: 1 } });
    const submit = h.jobs.submit.bind(h.jobs);
    h.jobs.submit = async (input) => {
      // Slower than the acknowledgement budget: the bot has to defer before it knows.
      await new Promise((r) => setTimeout(r, 1_800));
      return input.spec.prompt === 'refuse me' ? { ok: false, reason: 'You already have 1 request waiting.' } : submit(input);
    };
    const i = fake.slashCommand('imagine', { prompt: 'refuse me' });
    const reason = await fake.waitForRequest((r) => r.route === FOLLOW_UP && forToken(i.token)(r));
    const ack = fake.routeRequests(CALLBACK).find((r) => r.params.id === i.id)!;
    expect(ack.body).toMatchObject({ type: 5 });
    // The note landed before the follow-up, so the follow-up stayed a private message of its own.
    const note = fake.routeRequests(EDIT_ORIGINAL).filter(forToken(i.token))[0]!;
    expect(note.seq).toBeLessThan(reason.seq);
    expect(fake.originalMessage(i.id)?.content).toBe(NOT_STARTED_NOTE);
    expect(fake.originalMessage(i.id)?.components).toEqual([]);
    const privateAnswer = fake.messages.get((reason.response as { id: string }).id)!;
    expect(privateAnswer.id).not.toBe(fake.originalMessage(i.id)?.id);
    expect(privateAnswer.flags & 64).toBe(64);
    expect(privateAnswer.content).toMatch(/already have 1/);
    expect(fake.routeRequests(DELETE_ORIGINAL)).toHaveLength(0);
  });

  it('U: the full-size picture goes out only after the status edit landed, even when that edit met a 429', async () => {
    const { fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a brass compass', seed: 21 });
    const result = await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    await eventually(async () => (fake.originalMessage(first.id)?.content === DONE_NOTE ? true : undefined), 'the first done note');
    const before = fake.requests.length;
    fake.fail({ route: EDIT_ORIGINAL, status: 429, retryAfter: 0.3, times: 1 });
    const up = fake.buttonPress(button(result, 'U2'), messageId);
    const picture = await fake.waitForRequest((r) => r.route === FOLLOW_UP && forToken(up.token)(r) && withFile(r) && !isResult(r));
    const edits = fake.requests.slice(before).filter((r) => r.route === EDIT_ORIGINAL && forToken(up.token)(r));
    expect(edits[0]?.status).toBe(429);
    const landed = edits.find((r) => r.status === 200)!;
    expect(landed.seq).toBeLessThan(picture.seq);
    // The picture is a message of its own; the reply is the status, later the done note.
    const pictureMessage = (picture.response as { id: string }).id;
    expect(pictureMessage).not.toBe(fake.originalMessage(up.id)?.id);
    await resultPost(fake, up);
    await eventually(async () => (fake.originalMessage(up.id)?.content === DONE_NOTE ? true : undefined), 'the done note');
    expect(await parametersOf(fake.messages.get(pictureMessage)!.attachments[0]!.data)).toContain('Seed: 22');
  });

  it('a token close to its end: the reply is handed over (no buttons, not "thinking…") and the result is posted in the channel', async () => {
    const { fake } = await boot();
    const i = fake.slashCommand('imagine', { prompt: 'an hourglass' }, { createdAt: Date.now() - 14 * 60_000 - 5_000 });
    const posted = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r), 60_000);
    expect(String(posted.body?.content)).toMatch(new RegExp(`^<@${fake.member.id}> `));
    const handover = fake.routeRequests(EDIT_ORIGINAL).find((r) => forToken(i.token)(r) && r.body?.content === HANDOVER_NOTE);
    expect(handover?.body?.components).toEqual([]);
    expect(handover!.seq).toBeLessThan(posted.seq);
    // While the token still works, the reply ends as the done note; never "thinking…" or with Cancel.
    await eventually(async () => (fake.originalMessage(i.id)?.content === DONE_NOTE ? true : undefined), 'the done note');
    const original = fake.originalMessage(i.id)!;
    expect(original.components).toEqual([]);
    expect(original.flags & 128).toBe(0);
  });

  it('after the token expired, the channel upload uses the guild’s limit (not the member’s Nitro) and shrinks until Discord takes it', async () => {
    const { fake } = await boot({}, { premiumTier: 0 });
    const i = fake.slashCommand('imagine', { prompt: 'a lantern' }, { attachmentSizeLimit: 700 });
    await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === i.id);
    fake.expireToken(i.token);
    const posted = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r) && r.status === 200, 60_000);
    // 700 bytes was the interaction's limit; a bot message in a tier-0 guild may carry 10 MiB.
    expect(posted.files[0]!.data.length).toBeGreaterThan(700);
    expect((await sharp(posted.files[0]!.data).metadata()).format).toBe('png');

    // Discord refuses twice for size: the picture shrinks each time until it is taken.
    fake.fail({ route: CHANNEL_POST, status: 413, code: 40005, message: 'Request entity too large', times: 2, withFiles: true });
    const j = fake.slashCommand('imagine', { prompt: 'a second lantern' });
    await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === j.id);
    fake.expireToken(j.token);
    const taken = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r) && r.status === 200 && String(r.body?.content).includes('a second lantern'), 60_000);
    const tries = fake.routeRequests(CHANNEL_POST).filter((r) => withFile(r) && r.seq <= taken.seq && String(r.body?.content).includes('a second lantern'));
    expect(tries.map((r) => r.status)).toEqual([413, 413, 200]);
    const sizes = tries.map((r) => r.files[0]!.data.length);
    expect(sizes[1]!).toBeLessThan(sizes[0]!);
    expect(sizes[2]!).toBeLessThan(sizes[1]!);
  });

  it('🔁 where the bot may not attach files or write: refused with a reason (in the channel, or by DM), no job queued', async () => {
    const { h, fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a cactus', seed: 3 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    const all = fake.botPermissions(fake.ids.channelId);
    fake.setBotPermissions(fake.ids.channelId, all & ~PERM.ATTACH_FILES);
    await new Promise((r) => setTimeout(r, 100)); // the CHANNEL_UPDATE reaches the client
    const jobsBefore = (await h.store.jobs.active()).length;
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    const told = await fake.waitForRequest((r) => r.route === CHANNEL_POST && String(r.body?.content).includes('Attach Files'));
    expect(told.status).toBe(200);
    expect(told.body?.allowed_mentions).toEqual({ parse: [], users: [reactor.id] });

    fake.setBotPermissions(fake.ids.channelId, all & ~PERM.SEND_MESSAGES);
    await new Promise((r) => setTimeout(r, 100));
    fake.reactionRemove(messageId, '🔁', { user: reactor });
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    const dm = await fake.waitForRequest((r) => r.route === CHANNEL_POST && r.params.channel !== fake.ids.channelId);
    expect(String(dm.body?.content)).toContain('Send Messages');
    expect((await h.store.jobs.active()).length).toBe(jobsBefore);
  });

  it('a 🔁 reroll whose upload is refused (50013): the member is told and the status loses its Cancel button', async () => {
    const { h, fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a red kite', seed: 4 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    // The permission goes while the reroll is queued: the check at the reaction passed.
    const off = h.jobs.on((e) => {
      if (e.type === 'started' && e.job.requester.userId === reactor.id) {
        off();
        fake.setBotPermissions(fake.ids.channelId, fake.botPermissions(fake.ids.channelId) & ~PERM.ATTACH_FILES);
      }
    });
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    const status = await fake.waitForRequest((r) => r.route === CHANNEL_POST && r.status === 200 && !withFile(r));
    const refused = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r), 60_000);
    expect((refused.response as { code?: number }).code).toBe(50013);
    const statusMessage = fake.messages.get((status.response as { id: string }).id)!;
    await eventually(async () => (/could not post your picture/.test(statusMessage.content) ? true : undefined), 'the explanation');
    expect(statusMessage.components).toEqual([]);
    const jobId = decodeAction(button(status, 'Cancel'))!.jobId;
    const job = await eventually(async () => {
      const j = await h.jobs.get(jobId);
      return j?.delivery?.undeliverable ? j : undefined;
    }, 'the reroll marked undeliverable');
    expect(job.delivery?.undeliverable).toMatch(/50013/);
  });

  it('removing 🔁 and adding it again rerolls again; a replayed add does not', async () => {
    const { fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a paper crane', seed: 5 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    const results = () => fake.routeRequests(CHANNEL_POST).filter((r) => withFile(r) && r.status === 200);
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    fake.reactionAdd(messageId, '🔁', { user: reactor }); // a replay: same add, no removal between
    await eventually(async () => (results().length === 1 ? true : undefined), 'the first reroll');
    fake.reactionRemove(messageId, '🔁', { user: reactor });
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    await eventually(async () => (results().length === 2 ? true : undefined), 'the second reroll');
    await new Promise((r) => setTimeout(r, 300));
    expect(results()).toHaveLength(2);
  });

  it('a 🔁 made during a gateway outage is acted on after the resume; a session that cannot resume is logged', async () => {
    const { h, fake } = await boot({}, { heartbeatIntervalMs: 300 });
    const first = fake.slashCommand('imagine', { prompt: 'a snow globe', seed: 6 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    const resumed = fake.gateway.nextReady();
    fake.gateway.outage();
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    await new Promise((r) => setTimeout(r, 500));
    fake.gateway.restore();
    await resumed;
    const rerolled = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r) && r.status === 200, 60_000);
    expect(await parametersOf(rerolled.files[0]!.data)).toContain('a snow globe');
    expect(h.logLines.some((l) => l.includes('discord gateway resumed'))).toBe(true);

    fake.gateway.outage();
    fake.gateway.loseSession();
    fake.gateway.restore();
    await eventually(async () => (h.logLines.some((l) => l.includes('started a new session')) ? true : undefined), 'the lost-session warning');
  });

  it('a result posted while the done note could not be written: the next start writes it, and posts nothing twice', async () => {
    const bot = await boot();
    const { fake } = bot;
    const i = fake.slashCommand('imagine', { prompt: 'a lighthouse at dusk', seed: 12 });
    await resultPost(fake, i);
    // From the moment Discord took the picture, every edit of the reply fails (an outage, or a
    // kill: either way the bot never writes the done note in this life).
    fake.fail({ route: EDIT_ORIGINAL, status: 500, pathIncludes: i.token, times: 1_000 });
    await deliveredAs(bot.h, fake.ids.channelId, resultMessageId(fake, i));
    await eventually(async () => (fake.requests.some((r) => r.route === EDIT_ORIGINAL && r.status === 500) ? true : undefined), 'the failed done note');
    expect(fake.originalMessage(i.id)?.content).toBe(POSTING_NOTE);

    fake.clearFaults();
    await restart(bot);
    await eventually(async () => (fake.originalMessage(i.id)?.content === DONE_NOTE ? true : undefined), 'the done note after the restart');
    const results = fake.requests.filter((r) => r.route === FOLLOW_UP && forToken(i.token)(r) && isResult(r));
    expect(results).toHaveLength(1);
  });

  it('a 🔁 reroll interrupted by a restart keeps its one status message: reused, then removed when the result is out', async () => {
    const bot = await boot();
    const { fake } = bot;
    const first = fake.slashCommand('imagine', { prompt: 'a stone bridge', seed: 9 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    let restarted: Promise<unknown> | undefined;
    const off = bot.h.jobs.on((e) => {
      if (e.type === 'started' && e.job.requester.userId === reactor.id) {
        off();
        restarted = fake.waitForRequest((r) => r.route === CHANNEL_POST && r.status === 200 && !withFile(r)).then(() => restart(bot));
      }
    });
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    const result = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r) && r.status === 200, 60_000);
    await restarted;
    const statuses = fake.requests.filter((r) => r.route === CHANNEL_POST && r.status === 200 && !withFile(r));
    expect(statuses).toHaveLength(1);
    const statusId = (statuses[0]!.response as { id: string }).id;
    await eventually(async () => (fake.messages.get(statusId)?.deleted ? true : undefined), 'the status removed');
    expect(fake.requests.some((r) => r.route === CHANNEL_DELETE && r.params.message === statusId)).toBe(true);
    expect(result.body?.content).toContain(reactor.id);
  });
});
