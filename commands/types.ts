// The platform-neutral command layer's contract. Adapters turn platform events into a
// CommandRequest, call runCommand, and draw the CommandReply with their own widgets.
// Nothing here may import a platform library.
import type { Logger } from 'pino';
import type { ChatNotice } from './chat-notice.js';
import type { ModelInfo } from '../engine/types.js';
import type { Config } from '../src/config/schema.js';
import type { Job, JobService, ReplyTarget, Requester, SettingsRepo } from '../src/jobs/types.js';

export type CommandName =
  | 'imagine'
  | 'reroll'
  | 'vary'
  | 'upscale'
  | 'info'
  | 'cancel'
  | 'delete'
  | 'queue'
  | 'settings'
  | 'help'
  | 'web'
  /** The web studio's img2img from an uploaded picture (no slash command). */
  | 'img2img';

/** What a button (or a 🔁 reaction) asks for. Encoded by commands/codec.ts. */
export type ActionName = 'reroll' | 'vary' | 'vary-strong' | 'upscale' | 'info' | 'cancel' | 'delete';

export interface Action {
  action: ActionName;
  jobId: string;
  /** 0-based picture index, for per-picture actions. */
  index?: number;
}

export interface CommandRequest {
  command: CommandName;
  requester: Requester;
  /** Where a resulting job's messages go. */
  target: ReplyTarget;
  /** How the member asked: decides which permission applies (a reaction uses reactionReroll). */
  via: 'slash' | 'text' | 'button' | 'reaction';
  /** Free text: a prompt with inline --flags, a pasted AUTOMATIC1111 info text, or `settings` text. */
  text?: string;
  /** Slash-command options by name, already typed by the platform. */
  options?: Record<string, string | number | boolean>;
  /** For buttons and reactions. */
  action?: Action;
  /** A platform key (Telegram update, Discord interaction) so a re-delivered event queues nothing twice. */
  idempotencyKey?: string;
}

export interface ButtonSpec {
  action: Action;
  label: string;
  style: 'primary' | 'secondary' | 'danger';
}

export interface ReplyFile {
  /** Absolute path of a PNG under the data directory. */
  path: string;
  /** Suggested file name, e.g. `fox-1234.png`. */
  name: string;
}

/** A piece of a reply: prose, or verbatim text a member copies (an info text, a command to paste). */
export interface ReplyPart {
  text: string;
  /** Verbatim: adapters draw it as a code block with the platform's escaping, so `*`, `_`, `~~` copy as typed. */
  code?: boolean;
}

export interface CommandReply {
  /** false: a refusal or bad input; adapters show it privately (ephemeral on Discord). */
  ok: boolean;
  /** private: only the member should see it (Discord ephemeral); public: the channel may. */
  visibility: 'private' | 'public';
  text: string;
  /** When set, the same content as `text` in prose and code parts; adapters that can draw code blocks use these. */
  parts?: ReplyPart[];
  /** A job was queued: the adapter follows its events (queued, progress, done...). */
  queued?: { job: Job; position: number; etaSeconds: number };
  /** Files to send now (upscale's picture at full size). */
  files?: ReplyFile[];
  buttons?: ButtonSpec[][];
  /** For `delete`: the adapter should delete the result message of this job. */
  deleteJob?: Job;
}

/** How a finished job is presented: both adapters draw this. */
export interface ResultView {
  /** Short caption: prompt (shortened), seeds, model, time. */
  caption: string;
  /** Everything else that did not fit a short caption (notes about clamps, dropped words). */
  details: string[];
  buttons: ButtonSpec[][];
}

export interface CommandContext {
  config: Config;
  jobs: JobService;
  settings: SettingsRepo;
  /** The models the engine found (cached scan). */
  models(): ModelInfo[];
  /** Set while only the bundled demo model is installed: members are told what it can draw. */
  modelNotice?(): string | undefined;
  /** Tells each chat the model notice once (chat-notice.ts); absent where nobody needs telling. */
  chatNotice?: ChatNotice;
  log: Logger;
}
