// The fake Discord itself, driven by a bare discord.js client: if these fail, the adapter tests
// would be testing the fake rather than the bot.
import { AttachmentBuilder, Client, Events, GatewayIntentBits, MessageFlags, Partials, type Interaction } from 'discord.js';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeDiscord, type FakeDiscord } from './fakes/discord/index.js';

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
});
