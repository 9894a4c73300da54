/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The web studio in real Chromium (Debian's /usr/bin/chromium driven by playwright-core),
// against the real server, the real engine on a tiny model and real SQLite. One browser for
// the file, one context per case. Screenshots of each stage go to test/.artifacts/.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCommand } from '../commands/index.js';
import type { Requester } from '../src/jobs/types.js';
import { ARTIFACTS, bootStudio, hasChromium, launchChromium, type Studio } from './helpers/web.js';

if (!hasChromium) console.warn('web studio browser tests skipped: /usr/bin/chromium is absent (apt-get install chromium)');

const FINAL = ['done', 'delivered', 'failed', 'cancelled'];

async function openStudio(context: BrowserContext, url: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForSelector('body[data-stream="open"]');
  return page;
}

/** The newest job card, once the page has drawn one for `id`. */
function cardOf(page: Page, id: string): Locator {
  return page.locator(`#job-${id}`);
}

async function newestJobId(page: Page, before: string[]): Promise<string> {
  const handle = await page.waitForFunction((known) => {
    const ids = [...document.querySelectorAll('li.job')].map((n) => n.id.slice(4));
    return ids.find((id) => !known.includes(id));
  }, before);
  return (await handle.jsonValue()) as string;
}

async function jobIds(page: Page): Promise<string[]> {
  return page.locator('li.job').evaluateAll((nodes) => nodes.map((n) => n.id.slice(4)));
}

async function waitFinal(page: Page, id: string): Promise<string> {
  await page.waitForFunction(
    ([jobId, final]) => final.includes(document.getElementById(`job-${jobId}`)?.dataset.status ?? ''),
    [id, FINAL] as const,
    { timeout: 90_000 },
  );
  return (await cardOf(page, id).getAttribute('data-status')) ?? '';
}

async function draw(page: Page, prompt: string): Promise<string> {
  const before = await jobIds(page);
  await page.getByLabel('Prompt', { exact: true }).fill(prompt);
  await page.getByRole('button', { name: 'Draw', exact: true }).click();
  return newestJobId(page, before);
}

async function message(page: Page): Promise<string> {
  await page.waitForSelector('#message:not([hidden])');
  return (await page.locator('#message').textContent()) ?? '';
}

/** What a member dragging a file from their desktop onto the page sends. */
async function dropFile(page: Page, bytes: Buffer, name: string, type: string): Promise<void> {
  await page.evaluate(
    ([b64, fileName, mime]) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], fileName, { type: mime }));
      document.body.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    },
    [bytes.toString('base64'), name, type] as const,
  );
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

// One browser for the whole file (Chromium is heavy on a small machine); a context per case.
let browser: Browser;
beforeAll(async () => {
  if (hasChromium) browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

describe.skipIf(!hasChromium)('the web studio in Chromium, on loopback as the local admin', () => {
  let studio: Studio;

  beforeAll(async () => {
    studio = await bootStudio({
      config: { engine: { previews: true }, defaults: { steps: 6 } },
      model: { unet: 'smooth', unetBody: { channels: 32, layers: 2 } },
    });
  });
  afterAll(async () => {
    await studio?.close();
  });

  it('draws four pictures from a typed prompt, showing the queue and step progress in between', async () => {
    const context = await browser.newContext({ viewport: { width: 760, height: 1000 } });
    const page = await openStudio(context, studio.url);
    await expect(page.locator('#who').textContent()).resolves.toContain('local admin');
    const id = await draw(page, 'a red fox in the snow');
    await page.waitForFunction((jobId) => document.getElementById(`job-${jobId}`)?.dataset.seen?.includes('progress'), id);
    await shot(page, '01-drawing.png');
    expect(await waitFinal(page, id)).toBe('done');

    const seen = ((await cardOf(page, id).getAttribute('data-seen')) ?? '').split(' ');
    // Queue position first (from the stream or the answer, whichever came first), then drawing.
    expect(['queued', 'accepted']).toContain(seen[0]);
    expect(seen).toContain('started');
    expect(seen.indexOf('progress')).toBeGreaterThan(0);
    expect(seen.indexOf('progress')).toBeLessThan(seen.indexOf('done'));
    const card = cardOf(page, id);
    await expect(card.locator('.status').textContent()).resolves.toMatch(/^Done in/);
    await expect(card.locator('img.grid').count()).resolves.toBe(1);
    await expect(card.locator('.singles img').count()).resolves.toBe(4);
    // Every picture on the page loaded (the server found it under the data directory).
    const loaded = await card.locator('img').evaluateAll((imgs) => (imgs as HTMLImageElement[]).filter((i) => !i.hidden).every((i) => i.naturalWidth > 0));
    expect(loaded).toBe(true);
    await shot(page, '02-result.png');
    // README's picture (docs/studio.png is a palette-reduced copy of this one).
    await page.screenshot({ path: path.join(ARTIFACTS, 'readme.png') });

    // Download: the PNG with its parameters chunk, under a readable name.
    const download = page.waitForEvent('download');
    await card.getByRole('link', { name: 'Download picture 2 (PNG with parameters)' }).click();
    const file = await download;
    expect(file.suggestedFilename()).toMatch(/^a-red-fox-in-the-snow-\d+\.png$/);
    const bytes = await readFile((await file.path()) ?? '');
    expect(bytes.includes(Buffer.from('parameters'))).toBe(true);

    // Phone width: the form and the result still fit without sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    expect(overflow).toBeLessThanOrEqual(0);
    await shot(page, '03-phone.png');
    await context.close();
  });

  it('V2, U3, 🔁, ℹ️ and 🗑 on a result do what they do in chat', async () => {
    const context = await browser.newContext({ viewport: { width: 1000, height: 900 }, permissions: ['clipboard-read', 'clipboard-write'] });
    const page = await openStudio(context, studio.url);
    const id = await draw(page, 'a lighthouse on a cliff');
    expect(await waitFinal(page, id)).toBe('done');
    const card = cardOf(page, id);

    const press = async (name: string) => {
      const before = await jobIds(page);
      await card.getByRole('button', { name, exact: true }).click();
      const next = await newestJobId(page, before);
      expect(await waitFinal(page, next)).toBe('done');
      return (await studio.harness.jobs.get(next))!;
    };
    const vary = await press('Variations of picture 2');
    expect(vary.kind).toBe('vary');
    expect(vary.parentId).toBe(id);
    const upscale = await press('Upscale picture 3 (2×)');
    expect(upscale.kind).toBe('upscale');
    expect(upscale.spec.init).toMatchObject({ jobId: id, index: 2 });
    const reroll = await press('Reroll: the same request with new seeds');
    expect(reroll.kind).toBe('reroll');
    await shot(page, '04-actions.png');

    await card.getByRole('button', { name: 'Parameters and info text', exact: true }).click();
    await page.waitForSelector('#info[open]');
    await expect(page.locator('#info-text').textContent()).resolves.toContain('AUTOMATIC1111 parameters');
    await shot(page, '05-info.png');
    await page.getByRole('button', { name: 'Copy', exact: true }).click();
    await page.waitForFunction(() => document.getElementById('note')?.textContent === 'Copied.');
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    expect(copied).toBe(await page.locator('#info-text').textContent());
    await page.keyboard.press('Escape');

    await card.getByRole('button', { name: 'Delete this result', exact: true }).click();
    await page.waitForSelector(`#job-${id}`, { state: 'detached' });
    // Gone after a reload too: the page no longer lists it.
    await page.reload();
    await page.waitForSelector('body[data-stream="open"]');
    await expect(page.locator(`#job-${id}`).count()).resolves.toBe(0);
    await context.close();
  });

  it('draws from a pasted AUTOMATIC1111 info text, submitted from the keyboard', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    const before = await jobIds(page);
    const info = 'a castle in the clouds\nNegative prompt: fog\nSteps: 4, Sampler: Euler, CFG scale: 6, Seed: 4242, Size: 64x64, Model: tiny';
    await page.getByLabel('Prompt', { exact: true }).fill(info);
    await page.getByLabel('Prompt', { exact: true }).press('Control+Enter');
    const id = await newestJobId(page, before);
    expect(await waitFinal(page, id)).toBe('done');
    const job = (await studio.harness.jobs.get(id))!;
    expect(job.spec).toMatchObject({ prompt: 'a castle in the clouds', negativePrompt: 'fog', steps: 4, seed: 4242, guidance: 6, sampler: 'Euler' });
    await context.close();
  });

  it('is usable from the keyboard, labels every control, and its Options set what a prompt alone does not', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    const unlabelled = await page.evaluate(() => [
      ...[...document.querySelectorAll<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>('input, select, textarea')]
        .filter((e) => e.labels?.length === 0 && !e.getAttribute('aria-label'))
        .map((e) => e.name || e.id),
      ...[...document.querySelectorAll('button')].filter((b) => !(b.getAttribute('aria-label') || b.textContent?.trim())).map((b) => b.id),
    ]);
    expect(unlabelled).toEqual([]);

    // Keyboard only: the skip link, the prompt, then into the options and back to Draw.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await page.keyboard.type('a tree on a hill');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter'); // opens Options (the focused summary)
    await expect(page.locator('#options').getAttribute('open')).resolves.not.toBeNull();
    await page.getByLabel('Negative prompt').fill('blurry');
    await page.getByLabel('Aspect').selectOption('3:2');
    await page.getByLabel('Steps').fill('3');
    await page.getByLabel('Sampler').selectOption('DDIM');
    await page.getByLabel('Seed').fill('77');
    await page.getByLabel('Pictures', { exact: true }).fill('2');
    await page.getByLabel('Model').selectOption('tiny');
    const before = await jobIds(page);
    await page.getByRole('button', { name: 'Draw', exact: true }).focus();
    await page.keyboard.press('Enter');
    const id = await newestJobId(page, before);
    expect(await waitFinal(page, id)).toBe('done');
    const job = (await studio.harness.jobs.get(id))!;
    expect(job.spec).toMatchObject({ prompt: 'a tree on a hill', negativePrompt: 'blurry', steps: 3, sampler: 'DDIM', seed: 77, count: 2, model: 'tiny' });
    // (The aspect is not checked here: at the tiny model's 64×64 native area every ratio rounds to 64×64.)
    await context.close();
  });

  it('PNG Info: a dropped or chosen PNG with parameters fills the prompt box', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    const id = await draw(page, 'a blue whale');
    expect(await waitFinal(page, id)).toBe('done');
    const job = (await studio.harness.jobs.get(id))!;
    const png = await readFile(studio.harness.jobs.filePath(job.result!.images[1]!.file));
    await page.getByLabel('Prompt', { exact: true }).fill('');

    await dropFile(page, png, 'whale.png', 'image/png');
    await page.waitForFunction(() => (document.getElementById('prompt') as HTMLTextAreaElement).value.includes('Seed:'));
    const filled = await page.locator('#prompt').inputValue();
    expect(filled).toBe(job.result!.images[1]!.infoText);
    await shot(page, '06-png-info.png');

    await page.locator('#prompt').fill('');
    await page.setInputFiles('#file', { name: 'whale.png', mimeType: 'image/png', buffer: png });
    await page.waitForFunction(() => (document.getElementById('prompt') as HTMLTextAreaElement).value.includes('Seed:'));
    // Drawing it again makes the same picture: same seed, same parameters.
    const again = await draw(page, await page.locator('#prompt').inputValue());
    expect(await waitFinal(page, again)).toBe('done');
    const redraw = (await studio.harness.jobs.get(again))!;
    expect(redraw.spec.seed).toBe(job.result!.images[1]!.seed);
    const pixels = (file: string) => sharp(studio.harness.jobs.filePath(file)).raw().toBuffer();
    expect((await pixels(redraw.result!.images[0]!.file)).equals(await pixels(job.result!.images[1]!.file))).toBe(true);
    await context.close();
  });

  it('img2img: a dropped picture without parameters is the picture the next Draw starts from', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    // A 96×64 photo-like JPEG: another aspect than the job's, so the service crops it.
    const raw = Buffer.alloc(96 * 64 * 3);
    for (let i = 0; i < raw.length; i += 3) raw[i] = (i / 3) % 96 * 2;
    const jpeg = await sharp(raw, { raw: { width: 96, height: 64, channels: 3 } }).jpeg().toBuffer();
    await dropFile(page, jpeg, 'sketch.jpg', 'image/jpeg');
    await page.waitForSelector('#init:not([hidden])');
    await page.getByLabel('Strength: how far to move away from the picture').fill('0.45');
    await shot(page, '07-img2img.png');
    const id = await draw(page, 'a watercolour of the same scene');
    expect(await waitFinal(page, id)).toBe('done');
    const job = (await studio.harness.jobs.get(id))!;
    expect(job.spec.init).toMatchObject({ strength: 0.45 });
    expect(job.spec.init?.file).toMatch(/^uploads\/[0-9a-z]{12}\.png$/);
    expect(job.result!.images).toHaveLength(4);
    await cardOf(page, id).locator('img.grid').waitFor();
    await cardOf(page, id).getByRole('button', { name: 'Parameters and info text', exact: true }).click();
    await page.waitForSelector('#info[open]');
    await expect(page.locator('#info-text').textContent()).resolves.toContain('Made by img2img from an uploaded picture at strength 0.45.');
    await page.getByRole('button', { name: 'Close', exact: true }).click();

    // Pasting a picture (Ctrl+V of a copied image) does the same as dropping it.
    await page.getByRole('button', { name: 'Do not start from this picture' }).click();
    await page.evaluate(async (b64) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const transfer = new DataTransfer();
      transfer.items.add(new File([data], 'image.png', { type: 'image/jpeg' }));
      document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true, cancelable: true }));
    }, jpeg.toString('base64'));
    await page.waitForSelector('#init:not([hidden])');

    // Taken away again, the next Draw is a plain txt2img.
    await page.getByRole('button', { name: 'Do not start from this picture' }).click();
    const plain = await draw(page, 'a plain picture');
    expect(await waitFinal(page, plain)).toBe('done');
    expect((await studio.harness.jobs.get(plain))!.spec.init).toBeUndefined();
    await context.close();
  });

  it('bad input gets a clear message and the page keeps working', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);

    await page.getByRole('button', { name: 'Draw', exact: true }).click();
    expect(await message(page)).toContain('Tell me what to draw');

    await page.locator('#prompt').evaluate((box) => {
      (box as HTMLTextAreaElement).value = 'x'.repeat(10 * 1024 * 1024);
    });
    await page.getByRole('button', { name: 'Draw', exact: true }).click();
    await page.waitForFunction(() => document.getElementById('message')?.textContent?.includes('too large'));
    expect(await message(page)).toContain('10.0 MB');

    await page.setInputFiles('#file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a picture at all') });
    await page.waitForFunction(() => document.getElementById('message')?.textContent?.includes('not a picture'));

    const id = await draw(page, 'a small boat');
    expect(await waitFinal(page, id)).toBe('done');
    const del = cardOf(page, id).getByRole('button', { name: 'Delete this result', exact: true });
    await del.evaluate((b) => b.setAttribute('data-payload', 'v1:dl:../../etc'));
    await del.click();
    await page.waitForFunction(() => document.getElementById('message')?.textContent?.includes('not valid'));
    await del.evaluate((b) => b.setAttribute('data-payload', 'v1:dl:zzzzzzzz'));
    await del.click();
    await page.waitForFunction(() => document.getElementById('message')?.textContent?.includes('expired or was deleted'));
    await shot(page, '08-bad-input.png');

    const after = await draw(page, 'a small boat at night');
    expect(await waitFinal(page, after)).toBe('done');
    await expect(page.locator('#message').isHidden()).resolves.toBe(true);
    await context.close();
  });

  it('the gallery shows the member’s results newest first, a page at a time, and opens one with its actions', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    await page.getByRole('button', { name: 'Show my results' }).click();
    await page.waitForSelector('#gallery-items button[data-job]');
    const ids = async () => page.locator('#gallery-items button[data-job]').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-job')));
    const firstPage = await ids();
    expect(firstPage).toHaveLength(12);
    // Results deleted with 🗑 (an earlier case deletes one) leave the gallery.
    const stored = (await studio.harness.store.jobs.recentFinished(1000, Date.now() + 1)).filter((j) => j.result?.images.length && j.deletedAt === undefined);
    expect(firstPage).toEqual(stored.slice(0, 12).map((j) => j.id));
    // More until there is no more: every result, each once, newest first.
    for (let page_ = 0; page_ < 10 && (await page.locator('#gallery-more').isVisible()); page_++) {
      const shown = (await ids()).length;
      await page.getByRole('button', { name: 'More', exact: true }).click();
      await page.waitForFunction(
        (n) => document.querySelectorAll('#gallery-items button[data-job]').length > n || document.getElementById('gallery-more')?.hidden,
        shown,
      );
    }
    expect(await ids()).toEqual(stored.map((j) => j.id));
    await shot(page, '09-gallery.png');

    const oldest = stored[stored.length - 1]!;
    await page.locator(`#gallery-items button[data-job="${oldest.id}"]`).click();
    const card = cardOf(page, oldest.id);
    await card.waitFor();
    await expect(card.getByRole('button', { name: 'Parameters and info text', exact: true }).count()).resolves.toBe(1);
    await context.close();
  });

  it('picks its jobs up again after the server restarts mid-job', async () => {
    const context = await browser.newContext();
    const page = await openStudio(context, studio.url);
    // Big enough (seconds on this engine) that the restart surely lands while it draws.
    const first = await draw(page, 'a slow mountain --size 1024x1024 --steps 50');
    const second = await draw(page, 'a slow river --steps 40');
    await page.waitForFunction((jobId) => document.getElementById(`job-${jobId}`)?.dataset.seen?.includes('progress'), first);
    const atRestart = await Promise.all([first, second].map(async (id) => (await studio.harness.jobs.get(id))!.status));
    await studio.restart();
    // At least one of them was unfinished when the server went away.
    expect(atRestart.some((s) => !FINAL.includes(s))).toBe(true);
    await page.waitForFunction(() => document.body.dataset.stream === 'lost');
    // The stream (done) or the page's own look-up after reconnecting (delivered) brings the end.
    expect(['done', 'delivered']).toContain(await waitFinal(page, first));
    expect(['done', 'delivered']).toContain(await waitFinal(page, second));
    await page.waitForFunction(() => document.body.dataset.stream === 'open');
    await shot(page, '10-after-restart.png');
    for (const id of [first, second]) {
      await expect(cardOf(page, id).locator('.singles img').count()).resolves.toBe(4);
      // The card may have just been drawn: the picture's width once it has loaded (0 if it failed).
      // Pictures load lazily, so one below the fold never loads until it is scrolled into view.
      const picture = cardOf(page, id).locator('.singles img').first();
      await picture.scrollIntoViewIfNeeded();
      const width = picture.evaluate(
          (img) =>
            new Promise<number>((resolve) => {
              const el = img as HTMLImageElement;
              if (el.complete) return resolve(el.naturalWidth);
              el.addEventListener('load', () => resolve(el.naturalWidth));
              el.addEventListener('error', () => resolve(0));
            }),
        );
      await expect(width).resolves.toBeGreaterThan(0);
    }
    await context.close();
  });
});

describe.skipIf(!hasChromium)('the web studio in Chromium, two members signed in with the club password', () => {
  const PASSWORD = 'club password for the test';
  const SECRET = 'the studio test signing secret, 32+ characters';
  let studio: Studio;

  beforeAll(async () => {
    studio = await bootStudio({
      config: {
        queue: { perMemberPending: 3 },
        defaults: { steps: 30 },
        web: { enabled: true },
        permissions: { admins: { users: ['42'], roles: [] } },
      },
      model: { unet: 'smooth', unetBody: { channels: 32, layers: 2 } },
      secrets: { webPassword: PASSWORD, webSecret: SECRET },
    });
  });
  afterAll(async () => {
    await studio?.close();
  });

  async function signIn(name: string): Promise<Page> {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(studio.url);
    await page.getByLabel('Your name').fill(name);
    await page.getByLabel('Club password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('body[data-stream="open"]');
    return page;
  }

  it('refuses a wrong password with a clear message', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(studio.url);
    await page.getByLabel('Your name').fill('Mallory');
    await page.getByLabel('Club password').fill('guess');
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(await message(page)).toBe('Wrong password.');
    await expect(page.locator('#draw').isHidden()).resolves.toBe(true);
    // The right one signs in; Sign out ends the session.
    await page.getByLabel('Club password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForSelector('#draw:not([hidden])');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForSelector('#signin:not([hidden])');
    await page.reload();
    await page.waitForSelector('#signin:not([hidden])');
    await context.close();
  });

  it('keeps caps and fairness between members, and one cannot delete the other’s result', async () => {
    const alice = await signIn('Alice');
    const bob = await signIn('Bob');
    // Alice's first job is big: it holds the engine while the others arrive, so the order is the queue's.
    const mine = [await draw(alice, 'alice one --size 1024x1024 --steps 50'), await draw(alice, 'alice two'), await draw(alice, 'alice three')];
    await alice.getByLabel('Prompt', { exact: true }).fill('alice four');
    await alice.getByRole('button', { name: 'Draw', exact: true }).click();
    expect(await message(alice)).toContain('You already have 3 pictures waiting');
    const bobs = await draw(bob, 'bob one');
    await shot(bob, '11-two-members.png');

    for (const id of mine) expect(await waitFinal(alice, id)).toBe('done');
    expect(await waitFinal(bob, bobs)).toBe('done');
    const started = async (id: string) => (await studio.harness.jobs.get(id))!.startedAt!;
    // Round-robin: Bob came after Alice's three, and still drew before her second and third.
    expect(await started(bobs)).toBeLessThan(await started(mine[1]!));
    expect(await started(mine[1]!)).toBeLessThan(await started(mine[2]!));
    // Each page shows only its own member's jobs, and so does each gallery.
    await expect(bob.locator('li.job').count()).resolves.toBe(1);
    await bob.getByRole('button', { name: 'Show my results' }).click();
    await bob.waitForSelector('#gallery-items button[data-job]');
    await expect(bob.locator('#gallery-items button[data-job]').evaluateAll((bs) => bs.map((b) => b.getAttribute('data-job')))).resolves.toEqual([bobs]);

    // Bob gets hold of Alice's result (say, a shared link) and presses 🗑: refused, nothing removed.
    await bob.evaluate((id) => localStorage.setItem('studio.jobs', JSON.stringify([id])), mine[0]!);
    await bob.reload();
    await bob.waitForSelector(`#job-${mine[0]}`);
    await bob.locator(`#job-${mine[0]}`).getByRole('button', { name: 'Delete this result', exact: true }).click();
    expect(await message(bob)).toBe('Only Alice or an admin may delete this result here.');
    await expect(bob.locator(`#job-${mine[0]}`).count()).resolves.toBe(1);
    await expect(alice.locator(`#job-${mine[0]}`).count()).resolves.toBe(1);
    await shot(bob, '12-not-yours.png');
  });

  it('an admin signed in by a /web link sees the queue and cancels another member’s job', async () => {
    const alice = await signIn('Alice');
    await expect(alice.locator('#admin').isHidden()).resolves.toBe(true);
    // A big first job holds the engine long enough for the admin to see the queue behind it.
    const first = await draw(alice, 'alice draws big --size 1024x1024 --steps 50');
    const second = await draw(alice, 'alice waits big --size 1024x1024 --steps 50');

    const ann: Requester = { platform: 'discord', userId: '42', name: 'Ann', roles: [] };
    const { config } = studio.harness;
    const reply = await runCommand(
      { command: 'web', requester: ann, target: { platform: 'discord', chatId: '7', handle: {} }, via: 'slash' },
      { ...studio.harness.commands, config: { ...config, web: { ...config.web, publicUrl: studio.url } } },
    );
    const link = /(http:\/\/\S+)/.exec(reply.text)?.[1] ?? '';
    const context = await browser.newContext();
    const admin = await context.newPage();
    await admin.goto(link);
    await admin.waitForSelector('body[data-stream="open"]');
    await expect(admin.locator('#who').textContent()).resolves.toContain('Ann');
    await admin.waitForSelector(`#admin-queue li[data-job="${second}"]`);
    await shot(admin, '13-admin.png');
    await admin.locator(`#admin-queue li[data-job="${second}"]`).getByRole('button', { name: 'Cancel this job' }).click();
    expect(await waitFinal(alice, second)).toBe('cancelled');
    await expect(cardOf(alice, second).locator('.status').textContent()).resolves.toBe('Cancelled by Ann');
    // The running one too: cancel-any stops the engine mid-job.
    await admin.locator(`#admin-queue li[data-job="${first}"]`).getByRole('button', { name: 'Cancel this job' }).click();
    expect(await waitFinal(alice, first)).toBe('cancelled');
    await admin.waitForFunction(() => document.getElementById('admin-queue')?.textContent === 'The queue is empty.');
    await context.close();
  });
});
