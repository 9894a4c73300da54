// A whole bot core (real engine on a tiny model, real SQLite) with the web studio on a free
// loopback port; restart() stops both and starts them again on the same port and data.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { startWeb, type WebHandle } from '../../src/adapters/web/index.js';
import { freePort } from './free-port.js';
import { createHarness, type Harness, type HarnessOptions } from './harness.js';

export const CHROMIUM = '/usr/bin/chromium';
export const hasChromium = existsSync(CHROMIUM);
export const ARTIFACTS = path.resolve('test/.artifacts');

export interface Studio {
  harness: Harness;
  web: WebHandle;
  url: string;
  restart(): Promise<void>;
  close(): Promise<void>;
}

export async function bootStudio(options: HarnessOptions = {}): Promise<Studio> {
  const port = await freePort();
  const config = { ...options.config, web: { ...options.config?.web, port } };
  let harness = await createHarness({ ...options, config });
  const start = (h: Harness) => startWeb({ config: h.config, jobs: h.jobs, commands: h.commands, log: h.log, engine: h.engine, history: h.store.jobs });
  let web = await start(harness);
  const studio: Studio = {
    harness,
    web,
    url: web.url,
    async restart() {
      await web.stop();
      harness = await harness.restart();
      web = await start(harness);
      studio.harness = harness;
      studio.web = web;
    },
    async close() {
      await web.stop();
      await harness.close();
    },
  };
  return studio;
}

export async function launchChromium(): Promise<Browser> {
  await mkdir(ARTIFACTS, { recursive: true });
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}
