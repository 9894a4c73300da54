// ButtonSpec rows → a Telegram inline keyboard. Callback data is the shared action codec,
// which Telegram caps at 64 bytes; a button whose data would not fit is left out rather
// than making the whole message fail; so is one the codec cannot encode.
import type { InlineKeyboardButton, InlineKeyboardMarkup } from 'grammy/types';
import { encodeAction } from '../../../commands/codec.js';
import type { ButtonSpec } from '../../../commands/types.js';

export const CALLBACK_DATA_LIMIT = 64;

export function inlineKeyboard(rows: ButtonSpec[][] | undefined, onDropped?: (label: string) => void): InlineKeyboardMarkup | undefined {
  if (!rows || rows.length === 0) return undefined;
  const keyboard: InlineKeyboardButton[][] = [];
  for (const row of rows) {
    const buttons: InlineKeyboardButton[] = [];
    for (const spec of row) {
      const data = encodeOrUndefined(spec);
      if (data === undefined || Buffer.byteLength(data, 'utf8') > CALLBACK_DATA_LIMIT) {
        onDropped?.(spec.label);
        continue;
      }
      buttons.push({ text: spec.label, callback_data: data });
    }
    if (buttons.length > 0) keyboard.push(buttons);
  }
  return keyboard.length > 0 ? { inline_keyboard: keyboard } : undefined;
}

function encodeOrUndefined(spec: ButtonSpec): string | undefined {
  try {
    return encodeAction(spec.action);
  } catch {
    return undefined;
  }
}
