// The Discord adapter end to end: the real discord.js client against the fake Discord on
// loopback, the real engine on the tiny fixture model (through the harness). Every scenario
// asserts what the fake received on the wire.
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeAction, encodeAction } from '../commands/codec.js';
import { startDiscord } from '../src/adapters/discord/index.js';
import { DONE_NOTE } from '../src/adapters/discord/follow.js';
import { STALE_BUTTON } from '../src/adapters/discord/interactions.js';
import { NO_ATTACH_PERMISSIONS, type DispatchedInteraction } from './fakes/discord/index.js';
import {
  actionsOf,
  adopt,
  boot,
  button,
  CALLBACK,
  CHANNEL_DELETE,
  CHANNEL_EDIT,
  CHANNEL_POST,
  DELETE_ORIGINAL,
  deliveredAs,
  EDIT_ORIGINAL,
  eventually,
  FOLLOW_UP,
  forToken,
  parametersOf,
  restart,
  resultMessageId,
  resultPost,
  rowsOf,
  statusMessageId,
  stopBooted,
  withFile,
} from './helpers/discord-bot.js';

afterEach(stopBooted);

describe('discord adapter, end to end', () => {
  it('/imagine: defers within 3 s, shows the queue, then posts the grid as a new message that pings the member, and the status becomes a done note', async () => {
    const { h, fake } = await boot();
    const i = fake.slashCommand('imagine', { prompt: 'a red fox in the snow', seed: 1234 });

    const ack = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === i.id);
    expect(ack.status).toBe(204);
    expect(ack.body).toMatchObject({ type: 5 });
    expect((ack.body?.data as { flags?: number } | undefined)?.flags ?? 0).toBe(0); // public
    // Discord's protocol deadline for the first response.
    expect(ack.at - i.dispatchedAt).toBeLessThan(3000);

    const result = await resultPost(fake, i);
    const edits = fake.routeRequests(EDIT_ORIGINAL).filter(forToken(i.token));
    const statusEdits = edits.filter((r) => r.seq < result.seq).map((r) => String(r.body?.content));
    expect(statusEdits.some((t) => /Queued (#\d+|next up)/.test(t))).toBe(true);
    // A new message (edits notify nobody) that pings the member and nobody else.
    expect(String(result.body?.content)).toMatch(new RegExp(`^<@${fake.member.id}> `));
    expect(result.body?.allowed_mentions).toEqual({ parse: [], users: [fake.member.id] });
    expect(fake.messages.get(resultMessageId(fake, i))?.mentions).toEqual([fake.member.id]);
    // The status message is left as a done note without buttons, never "Queued" with Cancel.
    await eventually(async () => (fake.originalMessage(i.id)?.content === DONE_NOTE ? true : undefined), 'the done note');
    expect(fake.originalMessage(i.id)?.components).toEqual([]);
    const doneNote = fake.routeRequests(EDIT_ORIGINAL).filter(forToken(i.token)).at(-1)!;
    expect(doneNote.seq).toBeGreaterThan(result.seq);

    // The attachment is the grid, a PNG whose parameters are the request's.
    expect(result.files).toHaveLength(1);
    const params = await parametersOf(result.files[0]!.data);
    expect(params).toContain('a red fox in the snow');
    expect(params).toContain('Seed: 1234');
    const grid = await sharp(result.files[0]!.data).metadata();
    const job = await deliveredAs(h, fake.ids.channelId, resultMessageId(fake, i));
    expect(grid.width).toBe(job.result!.images[0]!.width * 2);
    expect(String(result.body?.content)).toContain('a red fox in the snow');
    expect(String(result.body?.content)).toContain('1234');

    // [U1 U2 U3 U4 🔁] [V1 V2 V3 V4 ℹ️] [🗑], every custom id a valid action on this job.
    const labels = rowsOf(result).map((row) => row.map((b) => b.label));
    expect(labels).toEqual([
      ['U1', 'U2', 'U3', 'U4', '🔁'],
      ['V1', 'V2', 'V3', 'V4', 'ℹ️'],
      ['🗑'],
    ]);
    for (const b of rowsOf(result).flat()) {
      expect(b.custom_id.length).toBeLessThanOrEqual(100);
      expect(decodeAction(b.custom_id)?.jobId).toBe(job.id);
    }
    expect(actionsOf(result).filter((a) => a.action === 'upscale').map((a) => a.index)).toEqual([0, 1, 2, 3]);

    expect(job.status).toBe('delivered');
    expect(job.delivery?.ref).toEqual({ chatId: fake.ids.channelId, messageId: resultMessageId(fake, i) });
    // Exactly one result for one command.
    expect(fake.routeRequests(FOLLOW_UP).filter(forToken(i.token)).filter(withFile)).toHaveLength(1);
  });

  it('reroll, vary and upscale buttons start new jobs in new messages; info answers privately', async () => {
    const { h, fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a lighthouse at dusk', seed: 7 });
    const result = await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    const firstJob = await deliveredAs(h, fake.ids.channelId, messageId);

    const reroll = fake.buttonPress(button(result, '🔁'), messageId);
    const rerolled = await resultPost(fake, reroll);
    const rerollAck = fake.routeRequests(CALLBACK).find((r) => r.params.id === reroll.id)!;
    expect(rerollAck.body).toMatchObject({ type: 5 });
    expect(rerollAck.at - reroll.dispatchedAt).toBeLessThan(3000);
    const rerollJob = decodeAction(button(rerolled, '🔁'))!.jobId;
    expect(rerollJob).not.toBe(firstJob.id);
    expect(await parametersOf(rerolled.files[0]!.data)).toContain('a lighthouse at dusk');
    expect(await parametersOf(rerolled.files[0]!.data)).not.toContain('Seed: 7,');

    const vary = fake.buttonPress(button(result, 'V2'), messageId);
    const varied = await resultPost(fake, vary);
    const varyParams = await parametersOf(varied.files[0]!.data);
    expect(varyParams).toContain('Seed: 8'); // picture 2 of seed 7
    expect(varyParams).toMatch(/Variation seed: \d+/);
    expect((await h.jobs.get(decodeAction(button(varied, '🔁'))!.jobId))?.parentId).toBe(firstJob.id);

    const up = fake.buttonPress(button(result, 'U1'), messageId);
    const upscaled = await resultPost(fake, up);
    // The full-size picture goes out at once below the status message…
    const fullSize = await fake.waitForRequest((r) => r.route === FOLLOW_UP && forToken(up.token)(r) && withFile(r));
    expect(await parametersOf(fullSize.files[0]!.data)).toContain('Seed: 7');
    // …and the 2× pass replaces the status: one picture, twice the side.
    const upMeta = await sharp(upscaled.files[0]!.data).metadata();
    expect(upMeta.width).toBe(firstJob.result!.images[0]!.width * 2);
    expect(rowsOf(upscaled).flat().map((b) => b.label)).toEqual(['🔁', 'ℹ️', '🗑']);

    const info = fake.buttonPress(button(result, 'ℹ️'), messageId);
    const infoAck = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === info.id);
    expect(infoAck.body).toMatchObject({ type: 5, data: { flags: 64 } });
    const infoText = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(info.token)(r));
    expect(String(infoText.body?.content)).toContain('a lighthouse at dusk');
    expect(String(infoText.body?.content)).toContain('Seed: 7');
    expect(String(infoText.body?.content)).toContain('/imagine');
    // The info text and the command to paste come as code blocks, so Markdown cannot reformat them.
    expect(String(infoText.body?.content)).toMatch(/```\n[^`]*Seed: 7[^`]*\n```/);
    expect(String(infoText.body?.content)).toMatch(/```\n\/imagine [^`]*\n```/);
    expect(fake.originalMessage(info.id)?.flags).toBe(64);
  });

  it('🔁 on a result rerolls it for the member; the bot’s own reaction and a repeat are ignored', async () => {
    const { h, fake } = await boot();
    const first = fake.slashCommand('imagine', { prompt: 'a green teapot', seed: 99 });
    await resultPost(fake, first);
    const messageId = resultMessageId(fake, first);
    const reactor = { id: '777777777777777001', username: 'bob' };

    fake.reactionAdd(messageId, '🔁', { user: fake.ids.botUser });
    fake.reactionAdd(messageId, '👍', { user: reactor });
    fake.reactionAdd(messageId, '🔁', { user: reactor });
    fake.reactionAdd(messageId, '🔁', { user: reactor });

    // A status message that names the member without pinging, then the result as a new message
    // under the reacted one that pings them; the status message then goes.
    const status = await fake.waitForRequest((r) => r.route === CHANNEL_POST);
    expect(String(status.body?.content)).toMatch(new RegExp(`^<@${reactor.id}> `));
    expect(status.body?.allowed_mentions).toEqual({ parse: [], users: [] });
    const final = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r), 60_000);
    expect(String(final.body?.content)).toMatch(new RegExp(`^<@${reactor.id}> `));
    expect(final.body?.allowed_mentions).toEqual({ parse: [], users: [reactor.id] });
    expect(final.body?.message_reference).toMatchObject({ message_id: messageId });
    const statusId = (status.response as { id: string }).id;
    await eventually(async () => (fake.messages.get(statusId)?.deleted ? true : undefined), 'the status message removed');
    expect(await parametersOf(final.files[0]!.data)).toContain('a green teapot');

    const rerollJob = await eventually(async () => {
      const j = await h.jobs.get(decodeAction(button(final, '🔁'))!.jobId);
      return j?.status === 'delivered' ? j : undefined;
    }, 'the reroll delivered');
    expect(rerollJob.requester.userId).toBe(reactor.id);
    // The reroll's own message is indexed too, so 🔁 on it works later.
    const ref = rerollJob.delivery!.ref!;
    // (the message index is written right after the delivered record, so give it a moment)
    const found = await eventually(() => h.jobs.findByMessage('discord', ref.chatId!, ref.messageId!), 'the message index');
    expect(found.id).toBe(rerollJob.id);
    // One reroll job (a status message and its result): the bot's reaction, 👍 and the repeat did nothing.
    expect(fake.routeRequests(CHANNEL_POST)).toHaveLength(2);
    expect(h.jobs.snapshot().waiting).toHaveLength(0);
  });

  it('bad input, a stale button and a missing permission get private explanations (flags 64)', async () => {
    const { fake } = await boot();
    const bad = fake.slashCommand('imagine', { prompt: '--ar 3:2' });
    const explanation = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(bad.token)(r));
    expect(String(explanation.body?.content)).toMatch(/what to draw/i);
    // Private from the first moment: the deferral itself was ephemeral, nothing public to delete.
    const badAck = fake.routeRequests(CALLBACK).find((r) => r.params.id === bad.id)!;
    expect(badAck.body).toMatchObject({ type: 5, data: { flags: 64 } });
    expect(fake.originalMessage(bad.id)?.flags).toBe(64);
    expect(fake.routeRequests(DELETE_ORIGINAL)).toHaveLength(0);

    const other = fake.slashCommand('help');
    const help = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(other.token)(r));
    expect(String(help.body?.content)).toContain('/imagine');
    expect(fake.originalMessage(other.id)?.flags).toBe(64);

    const msg = fake.originalMessage(other.id)!;
    const stale = fake.buttonPress('reroll:not-a-payload', msg.id);
    const staleAck = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === stale.id);
    expect(staleAck.body).toMatchObject({ type: 4, data: { content: STALE_BUTTON, flags: 64 } });
    const gone = fake.buttonPress('v1:rr:zzzzzzzz', msg.id);
    const goneAnswer = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(gone.token)(r));
    expect(fake.originalMessage(gone.id)?.flags).toBe(64);
    expect(String(goneAnswer.body?.content)).toMatch(/expired|deleted/);

    const noAttach = fake.slashCommand('imagine', { prompt: 'a cat' }, { appPermissions: NO_ATTACH_PERMISSIONS });
    const why = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === noAttach.id);
    expect(why.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(String((why.body?.data as { content?: string }).content)).toContain('Attach Files');
    // None of these flashed a public "thinking…".
    const publicAcks = fake.routeRequests(CALLBACK).filter((r) => ((r.body?.data as { flags?: number } | undefined)?.flags ?? 0) !== 64);
    expect(publicAcks).toHaveLength(0);
  });

  it('refuses privately outside the allowed channels and in DMs when DMs are off', async () => {
    const bot = await boot({ discord: { allowDMs: false, allowedChannels: ['333333333333333333'] } });
    const { fake } = bot;
    const elsewhere = fake.slashCommand('imagine', { prompt: 'a fox' }, { channelId: '444444444444444444' });
    const dm = fake.slashCommand('imagine', { prompt: 'a fox' }, { inGuild: false, channelId: '454545454545454545' });
    const a = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === elsewhere.id);
    expect(a.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(String((a.body?.data as { content?: string }).content)).toContain('<#333333333333333333>');
    const b = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === dm.id);
    expect(b.body).toMatchObject({ type: 4, data: { flags: 64 } });
    expect(String((b.body?.data as { content?: string }).content)).toMatch(/direct messages/);
    expect(bot.h.jobs.snapshot().waiting).toHaveLength(0);
  });

  it('🗑 deletes a result for its owner or an admin role and is refused to others; Cancel stops a drawing job', async () => {
    const adminRole = '666666666666666666';
    const { h, fake } = await boot({ permissions: { admins: { users: [], roles: [adminRole] } }, limits: { maxSteps: 150 } });
    const mine = fake.slashCommand('imagine', { prompt: 'a small cabin', seed: 3 });
    const result = await resultPost(fake, mine);
    const messageId = resultMessageId(fake, mine);
    await deliveredAs(h, fake.ids.channelId, messageId);

    const stranger = { id: '777777777777777003', username: 'dee' };
    const refused = fake.buttonPress(button(result, '🗑'), messageId, { user: stranger });
    const refusal = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(refused.token)(r));
    expect(String(refusal.body?.content)).toMatch(/Only alice or an admin may delete/);
    expect(fake.routeRequests(CHANNEL_DELETE)).toHaveLength(0);

    const admin = fake.buttonPress(button(result, '🗑'), messageId, { user: stranger, roles: [adminRole] });
    const deleted = await fake.waitForRequest((r) => r.route === CHANNEL_DELETE);
    expect(deleted.params).toMatchObject({ channel: fake.ids.channelId, message: messageId });
    const ack = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(admin.token)(r));
    expect(String(ack.body?.content)).toContain('Deleted');
    expect(fake.messages.get(messageId)?.deleted).toBe(true);

    // Cancel, pressed on the status message while the engine draws the job.
    const long = fake.slashCommand('imagine', { prompt: 'a long job', steps: 150 });
    const started = new Promise<string>((resolve) => {
      const off = h.jobs.on((e) => {
        if (e.type === 'progress' && e.job.spec.prompt === 'a long job') {
          off();
          resolve(e.job.id);
        }
      });
    });
    const jobId = await started;
    const press = fake.buttonPress(encodeAction({ action: 'cancel', jobId }), statusMessageId(fake, long));
    const answer = await fake.waitForRequest((r) => r.route === EDIT_ORIGINAL && forToken(press.token)(r));
    expect(String(answer.body?.content)).toMatch(/Stopped|Cancelled/);
    const final = await fake.waitForRequest(
      (r) => r.route === EDIT_ORIGINAL && forToken(long.token)(r) && /Cancelled by/.test(String(r.body?.content)),
    );
    expect(final.body?.components).toEqual([]);
    expect((await h.jobs.get(jobId))?.status).toBe('cancelled');
  });

  it('a full queue is explained privately to the member', async () => {
    const { fake } = await boot({ queue: { perMemberPending: 1 } });
    const a = fake.slashCommand('imagine', { prompt: 'first' });
    const b = fake.slashCommand('imagine', { prompt: 'second' });
    const refusal = await fake.waitForRequest(
      (r) => r.route === EDIT_ORIGINAL && (forToken(a.token)(r) || forToken(b.token)(r)) && /\b1\b/.test(String(r.body?.content)) && !/Queued/.test(String(r.body?.content)),
      30_000,
      'a refusal',
    );
    const refused = refusal.params.token === a.token ? a : b;
    expect(fake.originalMessage(refused.id)?.flags).toBe(64);
    const accepted = refusal.params.token === a.token ? b : a;
    await resultPost(fake, accepted);
  });

  it('an expired token: the result goes to the channel as a new message that mentions the member', async () => {
    const { h, fake } = await boot();
    const i = fake.slashCommand('imagine', { prompt: 'a paper boat', seed: 5 });
    await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === i.id);
    fake.expireToken(i.token);

    const posted = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r), 60_000);
    expect(String(posted.body?.content)).toMatch(new RegExp(`^<@${fake.member.id}> `));
    expect(posted.body?.allowed_mentions).toEqual({ parse: [], users: [fake.member.id] });
    expect(await parametersOf(posted.files[0]!.data)).toContain('a paper boat');
    expect(rowsOf(posted).flat().map((b) => b.label)).toContain('🔁');
    const message = [...fake.messages.values()].find((m) => m.channelId === fake.ids.channelId && m.attachments.length > 0 && m.type === 0)!;
    await deliveredAs(h, fake.ids.channelId, message.id);

    // An interaction older than the token's life is not even tried: straight to the channel.
    const old = fake.slashCommand('imagine', { prompt: 'an old request' }, { createdAt: Date.now() - 14.5 * 60_000 });
    const late = await fake.waitForRequest((r) => r.route === CHANNEL_POST && withFile(r) && String(r.body?.content).includes('an old request'), 60_000);
    expect(String(late.body?.content)).toContain(`<@${fake.member.id}>`);
    expect(fake.routeRequests(FOLLOW_UP).filter(forToken(old.token)).filter(withFile)).toHaveLength(0);

    // The 401s were logged, but no log line carries an interaction token or the bot token.
    expect(h.logLines.some((l) => l.includes('50027'))).toBe(true);
    for (const line of h.logLines) {
      expect(line).not.toContain(i.token);
      expect(line).not.toContain(old.token);
      expect(line).not.toContain(fake.token);
    }
  });

  it('after a restart, the old result’s buttons and 🔁 still work, and a result finished while away is delivered', async () => {
    let bot = await boot();
    const first = bot.fake.slashCommand('imagine', { prompt: 'a quiet harbour', seed: 11 });
    const result = await resultPost(bot.fake, first);
    const messageId = resultMessageId(bot.fake, first);

    bot = await restart(bot);
    expect(bot.fake.gateway.identifies).toBe(2);

    const press = bot.fake.buttonPress(button(result, '🔁'), messageId);
    const rerolled = await resultPost(bot.fake, press);
    expect(await parametersOf(rerolled.files[0]!.data)).toContain('a quiet harbour');

    bot.fake.reactionAdd(messageId, '🔁', { user: { id: '777777777777777002', username: 'cy' } });
    const viaReaction = await bot.fake.waitForRequest((r) => (r.route === CHANNEL_EDIT || r.route === CHANNEL_POST) && withFile(r), 60_000);
    expect(await parametersOf(viaReaction.files[0]!.data)).toContain('a quiet harbour');

    // A job that finishes while no adapter listens is delivered by the next one at start.
    // The adapter stops the moment the job is queued, so it never sees the job finish.
    let stopping: Promise<void> | undefined;
    const finished = new Promise<string>((resolve) => {
      const off = bot.h.jobs.on((e) => {
        if (e.job.spec.prompt !== 'a job finished offline') return;
        if (e.type === 'queued') stopping = bot.adapter.stop();
        if (e.type === 'done') {
          off();
          resolve(e.job.id);
        }
      });
    });
    const pending = bot.fake.slashCommand('imagine', { prompt: 'a job finished offline' });
    const jobId = await finished;
    await stopping;
    expect((await bot.h.jobs.get(jobId))?.status).toBe('done');
    expect(bot.fake.routeRequests(FOLLOW_UP).filter(forToken(pending.token)).filter(withFile)).toHaveLength(0);
    adopt(bot.h, await startDiscord({ config: bot.h.config, jobs: bot.h.jobs, commands: bot.h.commands, log: bot.h.log, token: bot.fake.token }));
    await resultPost(bot.fake, pending);
    await deliveredAs(bot.h, bot.fake.ids.channelId, resultMessageId(bot.fake, pending));
  });

  it('a gateway reconnect mid-job (with the interaction replayed) delivers the result exactly once', async () => {
    const { h, fake } = await boot();
    // The reconnect is asked for while the engine is drawing this very job.
    const resumed = fake.gateway.nextReady();
    let i: DispatchedInteraction | undefined;
    const started = new Promise<void>((resolve) => {
      const off = h.jobs.on((e) => {
        if (e.type !== 'started' || e.job.spec.prompt !== 'a windmill in the rain') return;
        off();
        fake.gateway.requestReconnect();
        fake.redispatch(i!); // buffered while the client is away, replayed after RESUME
        resolve();
      });
    });
    i = fake.slashCommand('imagine', { prompt: 'a windmill in the rain' });
    await started;
    await resumed;
    fake.redispatch(i); // and once more on the live connection
    await resultPost(fake, i);

    expect(fake.gateway.resumes).toBe(1);
    expect(fake.routeRequests(CALLBACK).filter((r) => r.params.id === i.id)).toHaveLength(1);
    await deliveredAs(h, fake.ids.channelId, resultMessageId(fake, i));
    // No second job was queued for the replays, and the result went out once.
    expect(h.jobs.snapshot().waiting).toHaveLength(0);
    expect(h.jobs.snapshot().running).toBeUndefined();
    expect(fake.routeRequests(FOLLOW_UP).filter(forToken(i.token)).filter(withFile)).toHaveLength(1);
    expect(fake.routeRequests(CHANNEL_POST)).toHaveLength(0);
  });

  it('posts a result once when recording its delivery fails for a moment (a busy store), and records it', async () => {
    const { h, fake } = await boot();
    const markDelivered = h.jobs.markDelivered.bind(h.jobs);
    let failures = 0;
    h.jobs.markDelivered = async (jobId, ref) => {
      if (failures++ === 0) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return markDelivered(jobId, ref);
    };
    const i = fake.slashCommand('imagine', { prompt: 'a kite', seed: 1 });
    await resultPost(fake, i);
    const job = await deliveredAs(h, fake.ids.channelId, resultMessageId(fake, i));
    expect(job.status).toBe('delivered');
    expect(failures).toBe(2);
    const posts = [...fake.routeRequests(FOLLOW_UP).filter(forToken(i.token)), ...fake.routeRequests(CHANNEL_POST)].filter(withFile);
    expect(posts).toHaveLength(1);
  });

  it('fits the picture under the interaction’s attachment_size_limit', async () => {
    const { fake } = await boot();
    const i = fake.slashCommand('imagine', { prompt: 'a striped umbrella' }, { attachmentSizeLimit: 700 });
    const result = await resultPost(fake, i);
    const file = result.files[0]!;
    expect(file.data.length).toBeLessThanOrEqual(700);
    expect(file.filename).toMatch(/\.(webp|jpg)$/);
    expect((result.body?.attachments as { filename: string }[])[0]?.filename).toBe(file.filename);
    const meta = await sharp(file.data).metadata();
    expect(['webp', 'jpeg']).toContain(meta.format);
  });

  it('a 429 on a progress edit is dropped, not retried in a storm, and the result still arrives', async () => {
    const { h, fake } = await boot();
    fake.fail({ route: EDIT_ORIGINAL, status: 429, retryAfter: 0.3, times: 1 });
    const i = fake.slashCommand('imagine', { prompt: 'a hot air balloon' });
    await resultPost(fake, i);
    const edits = fake.routeRequests(EDIT_ORIGINAL).filter(forToken(i.token));
    const limited = edits.filter((r) => r.status === 429);
    expect(limited).toHaveLength(1);
    // discord.js handed the 429 back instead of queueing a retry; the throttle backed off.
    expect(h.logLines.some((l) => l.includes('status edit rate-limited'))).toBe(true);
    expect(edits.filter((r) => r.status === 401 || r.status === 403)).toHaveLength(0);
  });
});
