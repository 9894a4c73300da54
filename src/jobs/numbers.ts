// Numbers as members type them: digits with an optional sign, decimal point and exponent
// ("20", "2e1", "1.5E3", ".5"). Read exactly, so "is it whole?" and "how big?" get true answers
// even past what a double holds ("99999999999999999999", "1e400").

/** More digits than this is not a number anyone means; answered with "far too large". */
const MAX_DIGITS = 1000;

const NUMBER = /^([-+]?)(\d*)(?:\.(\d*))?(?:e([-+]?\d{1,9}))?$/i;

export interface TypedNumber {
  /** As a double: ±Infinity when beyond its range. */
  value: number;
  /** The exact value when it is a whole number of at most MAX_DIGITS digits. */
  integer?: bigint;
  /** Whole, but with more than MAX_DIGITS digits. */
  huge: boolean;
}

export function readTypedNumber(text: string): TypedNumber | undefined {
  const m = NUMBER.exec(text);
  if (!m) return undefined;
  const [, sign = '', whole = '', fraction = '', exponent = '0'] = m;
  if (whole === '' && fraction === '') return undefined;
  const value = Number(text);
  let digits = (whole + fraction).replace(/^0+/, '');
  if (digits === '') return { value, integer: 0n, huge: false };
  let shift = Number(exponent) - fraction.length;
  const trimmed = digits.replace(/0+$/, '');
  shift += digits.length - trimmed.length;
  digits = trimmed;
  if (shift < 0) return { value, huge: false };
  if (digits.length + shift > MAX_DIGITS) return { value, huge: true };
  const magnitude = BigInt(digits) * 10n ** BigInt(shift);
  return { value, integer: sign === '-' ? -magnitude : magnitude, huge: false };
}

/** A double that stays finite and exact enough for a clamp: ±MAX_SAFE_INTEGER beyond that. */
export function clampToSafe(n: TypedNumber): number {
  const limit = Number.MAX_SAFE_INTEGER;
  if (n.value > limit) return limit;
  if (n.value < -limit) return -limit;
  return n.value;
}

const PLAIN_DECIMAL = /^[-+]?(\d+(\.\d*)?|\.\d+)$/;

/**
 * A stored setting or a form field: plain decimals only ("0.5", "0,5", "12"), so a typo such as
 * "0x10", "1e1" or a blank never becomes a value Number() would make of it (16, 10, 0).
 */
export function readPlainDecimal(raw: string): number | undefined {
  const text = raw.normalize('NFKC').trim().replace(',', '.');
  return PLAIN_DECIMAL.test(text) ? Number(text) : undefined;
}
