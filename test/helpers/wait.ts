// Waiting in tests: a plain sleep, and a poll that names what it waited for when it gives up.
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export type Check = () => boolean | Promise<boolean>;

/** Polls `check` every `everyMs` until it holds; throws "timed out waiting for <what>" after `tries` polls. */
export async function until(check: Check, what: string, tries = 2000, everyMs = 5): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}`);
}
