// The fake Discord itself, driven by a bare discord.js client: if these fail, the adapter tests
// would be testing the fake rather than the bot.
import { AttachmentBuilder, Client, Events, GatewayIntentBits, MessageFlags, Partials, type Interaction } from 'discord.js';
import { afterEach, describe, expect, it } from 'vitest';
import { PERM, startFakeDiscord, type FakeDiscord, type FakeDiscordOptions } from './fakes/discord/index.js';

let fake: FakeDiscord | undefined;
let client: Client | undefined;

afterEach(async () => {
  await client?.destroy();
  await fake?.close();
  client = undefined;
  fake = undefined;
});

async function connect(f: FakeDiscord): Promise<Client> {
  const c = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessageReactions],
    partials: [Partials.Message, Partials.Reaction, Partials.User, Partials.Channel],
    rest: { api: f.apiUrl },
  });
  const ready = new Promise<void>((resolve) => c.once(Events.ClientReady, () => resolve()));
  await c.login(f.token);
  await ready;
  return c;
}

describe('fake discord', () => {
  it('serves the gateway, a slash command, a deferral and a multipart edit to a real discord.js client', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    client = await connect(fake);
    expect(client.guilds.cache.get(fake.ids.guildId)?.channels.cache.has(fake.ids.channelId)).toBe(true);

    const handled = new Promise<void>((resolve, reject) => {
      client!.on(Events.InteractionCreate, (i: Interaction) => {
        if (!i.isChatInputCommand()) return;
        void (async () => {
          await i.deferReply();
          await i.editReply({ content: `got ${i.options.getString('prompt')}`, files: [new AttachmentBuilder(Buffer.from('png!'), { name: 'a.png' })] });
          resolve();
        })().catch(reject);
      });
    });
    const sent = fake.slashCommand('imagine', { prompt: 'a fox' });
    await handled;

    const callback = fake.routeRequests('POST /interactions/:id/:token/callback')[0]!;
    expect(callback.status).toBe(204);
    expect(callback.body).toMatchObject({ type: 5 });
    expect(callback.authorization).toBeUndefined();
    const edit = fake.routeRequests('PATCH /webhooks/:app/:token/messages/:message')[0]!;
    expect(edit.params.token).toBe(sent.token);
    expect(edit.body).toMatchObject({ content: 'got a fox' });
    expect(edit.files[0]?.data.toString()).toBe('png!');
    expect(fake.originalMessage(sent.id)?.attachments).toHaveLength(1);
  });

  it('answers a second acknowledgement with 40060 and an expired token with 50027', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    client = await connect(fake);
    const errors: unknown[] = [];
    const done = new Promise<void>((resolve) => {
      client!.on(Events.InteractionCreate, (i: Interaction) => {
        if (!i.isChatInputCommand()) return;
        void (async () => {
          await i.deferReply({ flags: MessageFlags.Ephemeral });
          await client!.rest
            .post(`/interactions/${i.id}/${i.token}/callback`, { body: { type: 5 }, auth: false })
            .catch((e: unknown) => errors.push(e));
          fake!.expireToken(i.token);
          await i.editReply('late').catch((e: unknown) => errors.push(e));
          resolve();
        })();
      });
    });
    fake.slashCommand('help');
    await done;
    expect(errors.map((e) => (e as { code?: number }).code)).toEqual([40060, 50027]);
    // The 401 came on an unauthenticated route, so the bot token survives it.
    await expect(client.rest.get('/users/@me')).resolves.toMatchObject({ id: fake.ids.botUser.id });
  });

  it('resumes after RECONNECT and replays the dispatches the client missed', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    client = await connect(fake);
    const seen: string[] = [];
    const replayed = new Promise<void>((resolve) => {
      client!.on(Events.InteractionCreate, (i: Interaction) => {
        if (!i.isChatInputCommand()) return;
        seen.push(i.id);
        resolve();
      });
    });
    const resumed = fake.gateway.nextReady();
    fake.gateway.requestReconnect();
    const missed = fake.slashCommand('queue');
    await resumed;
    await replayed;
    expect(fake.gateway.resumes).toBe(1);
    expect(fake.gateway.identifies).toBe(1);
    expect(seen).toEqual([missed.id]);
  });

  it('keeps Discord’s clocks: no first response after 3 s, no webhook after the token’s life', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500, initialResponseMs: 200, tokenLifetimeMs: 600 });
    client = await connect(fake);
    const codes: unknown[] = [];
    const done = new Promise<void>((resolve) => {
      client!.on(Events.InteractionCreate, (i: Interaction) => {
        if (!i.isChatInputCommand()) return;
        void (async () => {
          if (i.commandName === 'late') {
            await new Promise((r) => setTimeout(r, 300));
            await i.deferReply().catch((e: unknown) => codes.push((e as { code?: number }).code));
            return;
          }
          await i.deferReply();
          await i.editReply('in time');
          await new Promise((r) => setTimeout(r, 700));
          await i.editReply('too late').catch((e: unknown) => codes.push((e as { code?: number }).code));
          resolve();
        })();
      });
    });
    fake.slashCommand('late');
    fake.slashCommand('help');
    await done;
    expect(codes.sort()).toEqual([10062, 50027]);
  });

  it('turns the first follow-up into a loading deferral (ignoring its ephemeral flag), later ones into new messages', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    client = await connect(fake);
    const done = new Promise<void>((resolve) => {
      client!.on(Events.InteractionCreate, (i: Interaction) => {
        if (!i.isChatInputCommand()) return;
        void (async () => {
          await i.deferReply();
          await i.followUp({ content: 'meant to be private', flags: MessageFlags.Ephemeral });
          await i.followUp({ content: 'a second one', flags: MessageFlags.Ephemeral });
          resolve();
        })();
      });
    });
    const sent = fake.slashCommand('imagine', { prompt: 'x' });
    await done;
    const original = fake.originalMessage(sent.id)!;
    expect(original.content).toBe('meant to be private');
    expect(original.flags & 64).toBe(0); // public, as the deferral was
    const second = [...fake.messages.values()].find((m) => m.content === 'a second one')!;
    expect(second.id).not.toBe(original.id);
    expect(second.flags & 64).toBe(64);
  });

  it('refuses over-long content and components with 50035 and oversized files with 413/40005', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500, premiumTier: 0 });
    client = await connect(fake);
    const codes: unknown[] = [];
    const post = (body: Record<string, unknown>, files?: { name: string; data: Buffer }[]) =>
      client!.rest.post(`/channels/${fake!.ids.channelId}/messages`, { body, ...(files ? { files } : {}) }).catch((e: unknown) => {
        codes.push([(e as { status?: number }).status, (e as { code?: number }).code]);
      });
    const button = (id: string, label = 'x') => ({ type: 2, style: 2, custom_id: id, label });
    const row = (...b: unknown[]) => ({ type: 1, components: b });
    await post({ content: 'x'.repeat(2001) });
    await post({ content: 'rows', components: [1, 2, 3, 4, 5, 6].map((n) => row(button(`b${n}`))) });
    await post({ content: 'row', components: [row(...[1, 2, 3, 4, 5, 6].map((n) => button(`c${n}`)))] });
    await post({ content: 'label', components: [row(button('d', 'l'.repeat(81)))] });
    await post({ content: 'id', components: [row(button('e'.repeat(101)))] });
    await post({ content: 'big', attachments: [{ id: 0, filename: 'a.png' }] }, [{ name: 'a.png', data: Buffer.alloc(10 * 1024 * 1024 + 1) }]);
    fake.premiumTier = 2; // 50 MiB now
    await post({ content: 'fits', attachments: [{ id: 0, filename: 'a.png' }] }, [{ name: 'a.png', data: Buffer.alloc(10 * 1024 * 1024 + 1) }]);
    await post({ content: 'x'.repeat(2000) });
    expect(codes).toEqual([[400, 50035], [400, 50035], [400, 50035], [400, 50035], [400, 50035], [413, 40005]]);
  });

  it('checks the bot’s channel permissions (50001, 50013) and tells the client the same overwrites', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 500 });
    client = await connect(fake);
    const channel = fake.ids.channelId;
    const codes: unknown[] = [];
    const post = (body: Record<string, unknown>, files?: { name: string; data: Buffer }[]) =>
      client!.rest.post(`/channels/${channel}/messages`, { body, ...(files ? { files } : {}) }).then(
        () => codes.push('ok'),
        (e: unknown) => codes.push((e as { code?: number }).code),
      );
    const all = fake.botPermissions(channel);
    const updated = new Promise<void>((resolve) => client!.once(Events.ChannelUpdate, () => resolve()));
    fake.setBotPermissions(channel, all & ~PERM.ATTACH_FILES & ~PERM.READ_MESSAGE_HISTORY);
    await updated;
    const me = client.guilds.cache.get(fake.ids.guildId)!.members.me!;
    const seen = client.channels.cache.get(channel);
    expect(seen && 'permissionsFor' in seen && seen.permissionsFor(me).has(PERM.ATTACH_FILES)).toBe(false);
    expect(seen && 'permissionsFor' in seen && seen.permissionsFor(me).has(PERM.SEND_MESSAGES)).toBe(true);
    await post({ content: 'text only' });
    await post({ content: 'file', attachments: [{ id: 0, filename: 'a.png' }] }, [{ name: 'a.png', data: Buffer.from('png') }]);
    await post({ content: 'reply', message_reference: { message_id: '1' } });
    fake.setBotPermissions(channel, all & ~PERM.VIEW_CHANNEL);
    await post({ content: 'cannot see' });
    fake.closedDMs.add('555555555555555555');
    const dm = (await client.rest.post('/users/@me/channels', { body: { recipient_id: '555555555555555555' } })) as { id: string };
    await client.rest.post(`/channels/${dm.id}/messages`, { body: { content: 'hi' } }).catch((e: unknown) => codes.push((e as { code?: number }).code));
    expect(codes).toEqual(['ok', 50013, 50013, 50001, 50007]);
  });

  it('sends rate-limit headers and answers over-limit and global 429s with retry_after, which discord.js waits out', async () => {
    const opts: FakeDiscordOptions = { heartbeatIntervalMs: 500, rateLimit: { perWindow: 2, windowMs: 400 } };
    fake = await startFakeDiscord(opts);
    client = await connect(fake);
    const channel = fake.ids.channelId;
    for (let n = 0; n < 3; n++) await client.rest.post(`/channels/${channel}/messages`, { body: { content: `m${n}` } });
    const posts = fake.routeRequests('POST /channels/:channel/messages');
    // The client read the headers (remaining 0) and waited for the window instead of hitting a 429.
    expect(posts.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(posts[2]!.at - posts[0]!.at).toBeGreaterThanOrEqual(350);

    fake.globalRateLimit(0.5);
    const before = Date.now();
    await client.rest.post(`/channels/${channel}/messages`, { body: { content: 'after the global limit' } });
    const all = fake.routeRequests('POST /channels/:channel/messages');
    expect(all.filter((r) => r.status === 429)).toHaveLength(1);
    expect(all.at(-1)!.status).toBe(200);
    expect(all.at(-1)!.at - before).toBeGreaterThanOrEqual(450);
  });

  it('an outage: RESUME replays what was dispatched meanwhile; a lost session starts anew without it', async () => {
    fake = await startFakeDiscord({ heartbeatIntervalMs: 300 });
    client = await connect(fake);
    const seen: string[] = [];
    client.on(Events.InteractionCreate, (i: Interaction) => {
      if (i.isChatInputCommand()) seen.push(i.commandName);
    });
    let resumed = fake.gateway.nextReady();
    fake.gateway.outage();
    fake.slashCommand('during-outage');
    await new Promise((r) => setTimeout(r, 400));
    fake.gateway.restore();
    await resumed;
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['during-outage']);
    expect(fake.gateway.resumes).toBe(1);

    resumed = fake.gateway.nextReady();
    fake.gateway.outage();
    fake.slashCommand('lost');
    fake.gateway.loseSession();
    fake.gateway.restore();
    await resumed;
    await expect.poll(() => fake!.gateway.sessions.length, { timeout: 15_000 }).toBe(2);
    fake.slashCommand('after');
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual(['during-outage', 'after']);
  });
});
