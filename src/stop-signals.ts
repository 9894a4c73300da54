// SIGINT/SIGTERM handling: the first asks for a graceful stop, a second one for an immediate exit.
//
// When the bot runs under `npm start`, a signal sent to the whole process group (Ctrl-C in a
// terminal, systemd's default KillMode=control-group) reaches the bot twice: once from the
// sender and once more from npm, which forwards what it receives to its child. Both arrive
// within milliseconds; counting the copy as "the second signal" would skip the grace period.
// So a repeat within DUPLICATE_WINDOW_MS of the first is taken for that copy and ignored.

/** Long enough for npm's forwarded copy on a loaded machine; short enough for a person. */
export const DUPLICATE_WINDOW_MS = 1_000;

export type StopSignal = 'SIGINT' | 'SIGTERM';

export interface StopHandlers {
  graceful(signal: StopSignal): void;
  immediate(signal: StopSignal): void;
  /** A repeat inside the window, ignored (for the log). */
  duplicate?(signal: StopSignal): void;
}

/** Pure decision for one signal at `now` (ms), given when the first one came. */
export function classifySignal(firstAt: number | undefined, now: number): 'first' | 'duplicate' | 'second' {
  if (firstAt === undefined) return 'first';
  return now - firstAt < DUPLICATE_WINDOW_MS ? 'duplicate' : 'second';
}

export function onStopSignals(handlers: StopHandlers, now: () => number = () => performance.now()): void {
  let firstAt: number | undefined;
  const handle = (signal: StopSignal): void => {
    const at = now();
    switch (classifySignal(firstAt, at)) {
      case 'first':
        firstAt = at;
        handlers.graceful(signal);
        return;
      case 'duplicate':
        handlers.duplicate?.(signal);
        return;
      case 'second':
        handlers.immediate(signal);
    }
  };
  process.on('SIGINT', () => handle('SIGINT'));
  process.on('SIGTERM', () => handle('SIGTERM'));
}
