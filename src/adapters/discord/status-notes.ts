// What the Discord follower writes down about its status messages, so that the next start can
// finish what a kill interrupted: the id of a channel status message (a restarted job reuses it
// instead of leaving the old one behind with a live Cancel button), and the jobs whose result
// went out while their status still said "posting the result…".
import type { AdapterState } from '../../store/adapter-state.js';

export type JobNoteStore = Pick<AdapterState<unknown>, 'getNote' | 'setNote' | 'deleteNote'>;

/** The list of jobs between "posting" and the done note; not a job id (those never start with #). */
const POSTING_KEY = '#posting';

export class StatusNotes {
  readonly #store: JobNoteStore;
  /** Read-modify-write of the posting list, one at a time. */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(store: JobNoteStore) {
    this.#store = store;
  }

  async statusMessage(jobId: string): Promise<string | undefined> {
    return (await this.#store.getNote(jobId))?.[0];
  }

  rememberStatusMessage(jobId: string, messageId: string): Promise<void> {
    return this.#store.setNote(jobId, [messageId]);
  }

  /** Before the upload: if the bot dies before the done note, the next start writes it. */
  markPosting(jobId: string): Promise<void> {
    return this.#updatePosting((list) => (list.includes(jobId) ? list : [...list, jobId]));
  }

  /** The status has its last word: nothing about this job is needed any more. */
  async settled(jobId: string): Promise<void> {
    await this.#updatePosting((list) => list.filter((id) => id !== jobId));
    await this.#store.deleteNote(jobId);
  }

  async posting(): Promise<string[]> {
    return (await this.#store.getNote(POSTING_KEY)) ?? [];
  }

  #updatePosting(change: (list: string[]) => string[]): Promise<void> {
    const work = async () => {
      const before = await this.posting();
      const after = change(before);
      if (after.length === before.length && after.every((id, i) => id === before[i])) return;
      if (after.length === 0) await this.#store.deleteNote(POSTING_KEY);
      else await this.#store.setNote(POSTING_KEY, after);
    };
    const run = this.#chain.then(work, work);
    this.#chain = run.catch(() => undefined);
    return run;
  }
}
