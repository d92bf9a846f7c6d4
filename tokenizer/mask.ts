import { DomicileError } from '../policy/index.ts';
import { graphemes } from './graphemes.ts';

export interface MaskRule {
  keep: 'first' | 'last';
  count: number;
  maskChar: string;
}

/**
 * Masks a normalized value, counted in grapheme clusters: keeps `count` clusters
 * at the start or end and replaces each other cluster by `maskChar`.
 *
 * At most half of the clusters (rounded down) are kept, so a short value is
 * never shown whole: `keep: last, count: 4` on a 6-digit value shows 3 digits.
 * The mask keeps the number of clusters, so it reveals the length.
 */
export function maskValue(normalized: string, rule: MaskRule): string {
  const maskGraphemes = graphemes(rule.maskChar);
  if (maskGraphemes.length !== 1 || /\p{Cs}/u.test(rule.maskChar)) {
    throw new DomicileError('invalid_policy', 'mask character must be exactly one character');
  }
  if (!Number.isInteger(rule.count) || rule.count < 0) {
    throw new DomicileError('invalid_policy', 'mask count must be a non-negative integer');
  }

  const parts = graphemes(normalized);
  const keptCount = Math.min(rule.count, Math.floor(parts.length / 2));
  const hidden = rule.maskChar.repeat(parts.length - keptCount);
  if (keptCount === 0) {
    return hidden;
  }
  return rule.keep === 'first' ? parts.slice(0, keptCount).join('') + hidden : hidden + parts.slice(-keptCount).join('');
}
