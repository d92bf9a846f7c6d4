import { DomicileError, type FieldType, type Generalization } from '../policy/index.ts';
import { graphemes } from './graphemes.ts';
import type { NormalizedValue } from './normalize.ts';

function notApplicable(rule: string, type: FieldType): DomicileError {
  return new DomicileError('invalid_policy', `generalization ${rule} does not apply to a ${type} field`);
}

function dateParts(type: FieldType, normalized: NormalizedValue, rule: string): [number, number, number] {
  if (type !== 'date' || typeof normalized !== 'string') {
    throw notApplicable(rule, type);
  }
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(normalized);
  if (match === null) {
    throw new DomicileError('invalid_value', 'is not a normalized date');
  }
  return [Number(match[1]), Number(match[2]), Number(match[3])];
}

/** Whole years from a date of birth to `now`, in UTC calendar days. */
function ageInYears([year, month, day]: [number, number, number], now: Date): number {
  const nowMonth = now.getUTCMonth() + 1;
  const hadBirthday = nowMonth > month || (nowMonth === month && now.getUTCDate() >= day);
  return now.getUTCFullYear() - year - (hadBirthday ? 0 : 1);
}

/**
 * Coarsens a normalized value by the field's rule:
 * - `date: year | yearMonth`: `1988` or `1988-07` from a date;
 * - `ageBand: n`: the age at `now` as a band of n years, `30-39` for n = 10
 *   (`34` for n = 1), from a date of birth;
 * - `prefix: n`: the first n grapheme clusters of text, `EC1` from `EC1A 1BB`;
 * - `bucket: b`: the lower bound of the b-wide bucket of a number, 1200 for
 *   1234.5 with b = 100.
 */
export function generalizeValue(
  type: FieldType,
  normalized: NormalizedValue,
  rule: Generalization,
  now: Date = new Date(),
): string | number {
  if ('date' in rule) {
    const [year, month] = dateParts(type, normalized, 'date');
    const yearText = String(year).padStart(4, '0');
    return rule.date === 'year' ? yearText : `${yearText}-${String(month).padStart(2, '0')}`;
  }

  if ('ageBand' in rule) {
    const age = ageInYears(dateParts(type, normalized, 'ageBand'), now);
    if (age < 0) {
      throw new DomicileError('invalid_value', 'is a date of birth in the future');
    }
    const low = Math.floor(age / rule.ageBand) * rule.ageBand;
    return rule.ageBand === 1 ? String(low) : `${low}-${low + rule.ageBand - 1}`;
  }

  if ('prefix' in rule) {
    if (typeof normalized !== 'string') {
      throw notApplicable('prefix', type);
    }
    return graphemes(normalized).slice(0, rule.prefix).join('');
  }

  if (type !== 'number' || typeof normalized !== 'number') {
    throw notApplicable('bucket', type);
  }
  const low = Math.floor(normalized / rule.bucket) * rule.bucket;
  // Rounds away binary noise such as 0.30000000000000004 from a bucket of 0.1.
  return Number(low.toPrecision(15));
}
