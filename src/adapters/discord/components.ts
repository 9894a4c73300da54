// Buttons described as actions (commands/) drawn as Discord action rows.
import { ButtonStyle, ComponentType, type APIActionRowComponent, type APIButtonComponentWithCustomId } from 'discord.js';
import { encodeAction } from '../../../commands/codec.js';
import type { ButtonSpec } from '../../../commands/types.js';

// developers/components/reference.mdx: custom_id 1–100 chars, label ≤ 80, ≤ 5 buttons per row,
// ≤ 5 rows per message, custom ids unique within a message.
const MAX_CUSTOM_ID = 100;
const MAX_LABEL = 80;
const MAX_PER_ROW = 5;
const MAX_ROWS = 5;

export type ButtonRow = APIActionRowComponent<APIButtonComponentWithCustomId>;

const STYLES: Record<ButtonSpec['style'], ButtonStyle.Primary | ButtonStyle.Secondary | ButtonStyle.Danger> = {
  primary: ButtonStyle.Primary,
  secondary: ButtonStyle.Secondary,
  danger: ButtonStyle.Danger,
};

export function buttonRows(rows: ButtonSpec[][] | undefined): ButtonRow[] {
  if (!rows) return [];
  const used = new Set<string>();
  const out: ButtonRow[] = [];
  // A row longer than Discord allows wraps onto the next row rather than losing buttons.
  for (const row of rows) {
    let current: APIButtonComponentWithCustomId[] = [];
    for (const spec of row) {
      const customId = encodeAction(spec.action);
      if (customId.length > MAX_CUSTOM_ID || used.has(customId)) continue;
      used.add(customId);
      current.push({
        type: ComponentType.Button,
        custom_id: customId,
        label: spec.label.slice(0, MAX_LABEL) || '·',
        style: STYLES[spec.style],
      });
      if (current.length === MAX_PER_ROW) {
        out.push({ type: ComponentType.ActionRow, components: current });
        current = [];
      }
    }
    if (current.length > 0) out.push({ type: ComponentType.ActionRow, components: current });
  }
  return out.slice(0, MAX_ROWS);
}

/** The one button a waiting or drawing job shows. */
export function cancelRow(jobId: string): ButtonRow[] {
  return buttonRows([[{ action: { action: 'cancel', jobId }, label: 'Cancel', style: 'secondary' }]]);
}

/**
 * A result's buttons in Discord's layout: the per-picture rows [U1…U4] and [V1…V4] take the
 * job-wide buttons at their ends ([U1 U2 U3 U4 🔁], [V1 V2 V3 V4 ℹ️]) while a row has room,
 * and what is left (🗑) gets a row of its own.
 */
export function resultRows(rows: ButtonSpec[][]): ButtonRow[] {
  if (rows.length < 2) return buttonRows(rows);
  const perPicture = rows.slice(0, -1).map((r) => [...r]);
  const extras = [...(rows[rows.length - 1] ?? [])];
  for (const row of perPicture) {
    if (extras.length === 0) break;
    if (row.length < MAX_PER_ROW) row.push(extras.shift()!);
  }
  return buttonRows(extras.length > 0 ? [...perPicture, extras] : perPicture);
}
