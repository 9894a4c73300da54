import type Keyv from 'keyv';
import { SAMPLERS, type SamplerName } from '../../engine/types.js';
import type { MemberSettings, Platform, SettingsRepo } from '../jobs/types.js';

/**
 * Per-member defaults under `settings:<platform>:<userId>`. What comes back is re-checked field
 * by field: a record written by an older version, or edited by hand, must not feed a wrong type
 * into the parser.
 */
export class KeyvSettingsRepo implements SettingsRepo {
  constructor(private readonly kv: Keyv) {}

  async get(platform: Platform, userId: string): Promise<MemberSettings> {
    const stored = await this.kv.get<unknown>(settingsKey(platform, userId));
    return sanitize(stored);
  }

  async set(platform: Platform, userId: string, settings: MemberSettings): Promise<void> {
    const clean = sanitize(settings);
    const key = settingsKey(platform, userId);
    const ok = Object.keys(clean).length === 0 ? await this.kv.delete(key).then(() => true) : await this.kv.set(key, clean);
    if (ok === false) throw new Error('store write failed for settings');
  }
}

function settingsKey(platform: Platform, userId: string): string {
  return `settings:${platform}:${userId}`;
}

function sanitize(value: unknown): MemberSettings {
  if (!value || typeof value !== 'object') return {};
  const v = value as Record<string, unknown>;
  const out: MemberSettings = {};
  if (typeof v.aspect === 'string') out.aspect = v.aspect;
  if (typeof v.negativePrompt === 'string') out.negativePrompt = v.negativePrompt;
  if (typeof v.steps === 'number' && Number.isFinite(v.steps)) out.steps = v.steps;
  if (typeof v.guidance === 'number' && Number.isFinite(v.guidance)) out.guidance = v.guidance;
  if (typeof v.sampler === 'string' && (SAMPLERS as readonly string[]).includes(v.sampler)) {
    out.sampler = v.sampler as SamplerName;
  }
  if (typeof v.images === 'number' && Number.isFinite(v.images)) out.images = v.images;
  if (typeof v.model === 'string') out.model = v.model;
  return out;
}
