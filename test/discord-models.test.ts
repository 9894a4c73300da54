// Discord and the installed models: the /imagine model option suggests each model with what it is
// (family, native size, dtype, source) as the member types, and a member drawing with a
// checkpoint on its first use sees "Preparing model … (first use only)" in the status message
// before the picture arrives. Real discord.js against the fake Discord, real engine.
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DEMO_TOKENIZER_DIR, writeTinyCheckpoint } from './fixtures/tiny-checkpoint.js';
import { boot, CALLBACK, EDIT_ORIGINAL, forToken, resultPost, stopBooted } from './helpers/discord-bot.js';

afterEach(stopBooted);

const withCheckpoint = {
  prepareModels: async (dir: string) => {
    await writeTinyCheckpoint(path.join(dir, 'club-model.safetensors'), { dtype: 'F16' });
    await cp(DEMO_TOKENIZER_DIR, path.join(dir, 'tokenizer'), { recursive: true });
  },
};

describe('discord: models', () => {
  it('suggests the installed models with family, size, dtype and source while the member types', async () => {
    const { fake } = await boot({}, {}, withCheckpoint);
    const all = fake.autocomplete('imagine', 'model', '');
    const answer = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === all.id);
    expect(answer.status).toBe(204);
    expect(answer.body).toEqual({
      type: 8,
      data: {
        choices: [
          { name: 'club-model — SD 1.x, 512×512, fp16, checkpoint', value: 'club-model' },
          { name: 'tiny — SD 1.x, 64×64, fp32, onnx', value: 'tiny' },
        ],
      },
    });
    const typed = fake.autocomplete('imagine', 'model', 'CLUB');
    const narrowed = await fake.waitForRequest((r) => r.route === CALLBACK && r.params.id === typed.id);
    expect((narrowed.body?.data as { choices: { value: string }[] }).choices.map((c) => c.value)).toEqual(['club-model']);
  });

  it('says "Preparing model … (first use only)" in the status message on a checkpoint\'s first use, then posts the picture', async () => {
    const { fake } = await boot({}, {}, withCheckpoint);
    const i = fake.slashCommand('imagine', { prompt: 'a fox --size 64x64 --steps 2', model: 'club-model', images: 1, seed: 3 });
    const result = await resultPost(fake, i);
    const statuses = fake
      .routeRequests(EDIT_ORIGINAL)
      .filter(forToken(i.token))
      .filter((r) => r.seq < result.seq)
      .map((r) => String(r.body?.content));
    expect(statuses.some((t) => /Preparing model club-model \(first use only\)… \d+%/.test(t))).toBe(true);
  });
});
