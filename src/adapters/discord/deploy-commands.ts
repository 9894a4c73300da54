// `npm run deploy-commands [-- --global | --guild <id>]`: registers the slash commands once.
// Never run on start-up: Discord allows 200 command creates per guild per day, and a bot that
// re-registers on every launch runs into it.
import { pathToFileURL } from 'node:url';
import { REST, Routes, type APIApplication } from 'discord.js';
import { ConfigError, loadConfig } from '../../config/load.js';
import type { Config } from '../../config/schema.js';
import { describeFailure } from './errors.js';
import { discordCommands } from './slash.js';

export interface DeployOptions {
  config: Config;
  token: string;
  /** Register for every guild (takes up to an hour to show). */
  global?: boolean;
  /** Register for this guild only (instant); default config.discord.commandGuild. */
  guildId?: string;
}

export interface DeployResult {
  scope: 'global' | 'guild';
  guildId?: string;
  applicationId: string;
  names: string[];
}

export async function deployCommands(opts: DeployOptions): Promise<DeployResult> {
  const rest = new REST({ api: opts.config.discord.apiUrl }).setToken(opts.token);
  const app = (await rest.get(Routes.currentApplication())) as APIApplication;
  const body = discordCommands(opts.config);
  const guildId = opts.global ? undefined : opts.guildId || opts.config.discord.commandGuild || undefined;
  const route = guildId ? Routes.applicationGuildCommands(app.id, guildId) : Routes.applicationCommands(app.id);
  // PUT replaces the whole set, so removed commands disappear too.
  await rest.put(route, { body });
  return { scope: guildId ? 'guild' : 'global', ...(guildId ? { guildId } : {}), applicationId: app.id, names: body.map((c) => c.name) };
}

export interface CliArgs {
  global: boolean;
  guildId?: string;
}

export function parseArgs(argv: string[]): CliArgs | { error: string } {
  const out: CliArgs = { global: false };
  for (let k = 0; k < argv.length; k++) {
    const arg = argv[k];
    if (arg === '--global') out.global = true;
    else if (arg === '--guild') {
      const id = argv[++k];
      if (!id || !/^\d{17,20}$/.test(id)) return { error: '--guild needs a guild id (a number of 17–20 digits).' };
      out.guildId = id;
    } else return { error: `Unknown argument ${JSON.stringify(arg)}. Use --global or --guild <id>.` };
  }
  if (out.global && out.guildId) return { error: 'Use either --global or --guild <id>, not both.' };
  return out;
}

const USAGE = `Usage: npm run deploy-commands [-- --guild <id> | --global]
  (no flag)      register in config discord.commandGuild if set (visible at once), else globally
  --guild <id>   register in that guild only (visible at once; for testing)
  --global       register everywhere (may take up to an hour to show)
Needs DISCORD_TOKEN in the environment. Run it once, not on every start: Discord limits command creates per day.`;

async function main(): Promise<number> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    console.log(USAGE);
    return 0;
  }
  const args = parseArgs(process.argv.slice(2));
  if ('error' in args) {
    console.error(args.error);
    return 2;
  }
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : `Could not load the configuration: ${String(err)}`);
    return 1;
  }
  const token = config.secrets.discordToken;
  if (!token) {
    console.error('DISCORD_TOKEN is not set. Put the bot token in the environment (never in a config file) and run again.');
    return 1;
  }
  try {
    const done = await deployCommands({ config, token, global: args.global, ...(args.guildId ? { guildId: args.guildId } : {}) });
    const where = done.scope === 'guild' ? `guild ${done.guildId} (visible now)` : 'every guild (may take up to an hour to show)';
    console.log(`Registered /${done.names.join(', /')} for ${where}.`);
    return 0;
  } catch (err) {
    const f = describeFailure(err);
    const hint = f.status === 401 ? ' The token was refused: check DISCORD_TOKEN.' : '';
    console.error(`Registering the commands failed: ${f.message}${f.code !== undefined ? ` (code ${f.code})` : ''}.${hint}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    () => process.exit(1),
  );
}
