import { z } from 'zod';
import { SAMPLERS } from '../../engine/types.js';

// The documented defaults live in config/default.jsonc; this schema is what start-up checks.
// Keys are strict: a misspelt key is an error that names it, not a silently ignored setting.

const id = z.string().regex(/^[0-9A-Za-z_-]{1,64}$/, 'an id of letters, digits, _ or -');
const ids = z.array(id);
const aspect = z.string().regex(/^\d{1,2}:\d{1,2}$/, 'a ratio such as 1:1, 3:2 or 16:9');
const who = z.enum(['anyone', 'owner']);

export const TierSchema = z
  .object({
    name: z.string().min(1),
    /** Discord role ids that belong to this tier. */
    roles: ids.default([]),
    /** Platform user ids (Discord or Telegram) that belong to this tier. */
    users: ids.default([]),
    /** 1 = normal. A tier with weight 2 gets two turns for each turn of weight 1. */
    weight: z.number().int().min(1).max(10),
  })
  .strict();

export const ConfigSchema = z
  .object({
    dataDir: z.string().min(1),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
    models: z
      .object({
        dir: z.string().min(1),
        default: z.string(),
      })
      .strict(),
    engine: z
      .object({
        providers: z.array(z.enum(['cuda', 'webgpu', 'cpu'])).min(1),
        threads: z.number().int().min(0).max(256),
        warmup: z.boolean(),
        previews: z.boolean(),
        /** MB the loaded models may take together (estimated from their weight files); 0 = 60 % of RAM. */
        memoryBudgetMB: z.number().int().min(0).max(16 * 1024 * 1024),
        /** "low": only the UNet stays loaded; text encoder and VAE are loaded per job, large pictures decoded in tiles. */
        memory: z.enum(['normal', 'low']),
      })
      .strict(),
    limits: z
      .object({
        maxSteps: z.number().int().min(1).max(150),
        maxPixels: z.number().int().min(64 * 64).max(2048 * 2048),
        maxSide: z.number().int().min(64).max(4096),
        maxImagesPerJob: z.number().int().min(1).max(9),
        maxPromptLength: z.number().int().min(1).max(6000),
        maxPromptChunks: z.number().int().min(1).max(32),
        maxGuidance: z.number().min(1).max(50),
      })
      .strict(),
    defaults: z
      .object({
        aspect,
        steps: z.number().int().min(1).max(150),
        guidance: z.number().min(0).max(50),
        sampler: z.enum(SAMPLERS),
        images: z.number().int().min(1).max(9),
        negativePrompt: z.string(),
        /** Variation strength for the subtle and strong V buttons. */
        varySubtle: z.number().min(0.01).max(1),
        varyStrong: z.number().min(0.01).max(1),
        /** img2img strength of the 2× hires pass behind the U buttons. */
        upscaleStrength: z.number().min(0.05).max(1),
      })
      .strict(),
    queue: z
      .object({
        perMemberPending: z.number().int().min(1).max(100),
        globalPending: z.number().int().min(1).max(10_000),
        tiers: z.array(TierSchema),
        /** A job that crashed the engine worker this many times is failed instead of retried. */
        maxAttempts: z.number().int().min(1).max(10),
        /**
         * A job that was running this many times when the whole process died (a kill, a power cut,
         * or a native crash that took the process down) is failed instead of resumed.
         */
        maxInterruptions: z.number().int().min(1).max(100),
        /**
         * Seconds per step and picture assumed for ETAs before this engine has measured a model.
         * Unset: a typical figure for the provider, scaled by the model's UNet size and the picture size.
         */
        initialSecondsPerStep: z.number().positive().optional(),
        /** On SIGINT/SIGTERM, how long the running job may take to finish before it is put back. */
        shutdownGraceSeconds: z.number().int().min(0).max(600),
        /** "local": the in-process engine worker; "redis": engine workers anywhere, through BullMQ. */
        backend: z.enum(['local', 'redis']),
        redis: z
          .object({
            /** redis://host:port (or rediss://) of the queue; workers use the same URL. */
            url: z.string().regex(/^rediss?:\/\/\S+/, 'a redis:// or rediss:// URL'),
            /** Key prefix of the queue, its results and worker heartbeats. */
            prefix: z.string().regex(/^[0-9A-Za-z_-]{1,32}$/, 'letters, digits, _ or -'),
            /** A worker holds its job's lock this long; it renews it every half of it. */
            lockSeconds: z.number().int().min(1).max(3600),
            /** How often a job whose worker vanished is looked for and run again elsewhere. */
            stalledCheckSeconds: z.number().int().min(1).max(3600),
            /** A job whose workers vanished this many times counts as one engine crash. */
            maxStalls: z.number().int().min(1).max(100),
            /** Result pictures wait in Redis at most this long for the bot to save them. */
            resultTtlHours: z.number().int().min(1).max(168),
            /** A worker refuses to hand back results larger than this (all pictures, PNG). */
            maxResultMegabytes: z.number().int().min(1).max(512),
          })
          .strict(),
      })
      .strict(),
    storage: z
      .object({
        /** sqlite://path (relative to the working directory) or redis://host:port. */
        // An empty sqlite:// would be an in-memory store: every job lost at the next restart.
        url: z.string().regex(/^(sqlite:\/\/\S|(redis|rediss):\/\/)/, 'a sqlite:// (with a file path) or redis:// URL'),
      })
      .strict(),
    permissions: z
      .object({
        admins: z.object({ users: ids, roles: ids }).strict(),
        /** Who may press the buttons on another member's result. */
        reroll: who,
        vary: who,
        upscale: who,
        /** Cancel and delete are always allowed to the owner and admins; 'anyone' opens them to all. */
        cancel: who,
        delete: who,
        /** Who may reroll a result by reacting with 🔁. */
        reactionReroll: who,
      })
      .strict(),
    discord: z
      .object({
        /** Empty list: every guild the bot is in. */
        allowedGuilds: ids,
        allowedChannels: ids,
        allowDMs: z.boolean(),
        /** Guild that `npm run deploy-commands -- --guild` registers to (instant); empty: global. */
        commandGuild: z.string(),
        /** REST base URL; only tests change it. */
        apiUrl: z.string().url(),
        progressEditMs: z.number().int().min(250),
      })
      .strict(),
    telegram: z
      .object({
        /** Empty list: every chat. */
        allowedChats: ids,
        allowedUsers: ids,
        apiRoot: z
          .string()
          .url()
          .refine((s) => !s.endsWith('/'), 'no trailing slash'),
        groupEditMs: z.number().int().min(250),
        privateEditMs: z.number().int().min(250),
        /** Reactions that reroll a result. Telegram's standard reaction set has no 🔁, so clubs add one it has. */
        rerollReactions: z.array(z.string().min(1).max(16)).min(1),
      })
      .strict(),
    web: z
      .object({
        /** Start the web studio beside the chat bots (without any bot token it always starts). */
        enabled: z.boolean(),
        host: z.string().min(1),
        // From the environment (WEB_PORT) it arrives as text. 0 = any free port (tests).
        port: z.coerce.number().int().min(0).max(65535),
        /** The address members' browsers use, for /web sign-in links; "" = http://host:port. */
        publicUrl: z
          .string()
          .refine((s) => s === '' || (/^https?:\/\/\S+$/.test(s) && !s.endsWith('/')), 'an http(s):// URL without a trailing slash, or ""'),
        /** How long a /web sign-in link (and the browser session it opens) lasts. */
        linkMinutes: z.number().int().min(1).max(43_200),
        /** Largest uploaded picture or request body. */
        maxUploadBytes: z.number().int().min(65_536).max(52_428_800),
      })
      .strict(),
    retention: z
      .object({
        /** Days a finished job and its image files are kept; 0 keeps them forever. */
        days: z.number().min(0).max(3650),
        sweepMinutes: z.number().min(1).max(1440),
      })
      .strict(),
  })
  .strict();

export type FileConfig = z.infer<typeof ConfigSchema>;

/** Secrets come only from the environment and never from files. */
export interface Secrets {
  discordToken?: string;
  telegramToken?: string;
  /** WEB_PASSWORD: the web studio's shared password. */
  webPassword?: string;
  /** WEB_SECRET: signs /web sign-in links and studio sessions (at least 32 characters). */
  webSecret?: string;
}

export type Config = Readonly<FileConfig & { secrets: Secrets }>;
export type Tier = z.infer<typeof TierSchema>;
