/**
 * Maps every Unicode decimal digit (general category Nd, such as Arabic-Indic
 * `٣` or fullwidth `３`) to its ASCII digit. Unicode encodes each such set as a
 * run of ten code points from 0 to 9 (a stability guarantee of the standard),
 * and adjacent runs also start at 0, so the value is the offset in the run modulo 10.
 */
let table: Map<number, string> | undefined;

/** Highest code point scanned; the last Nd run of Unicode 15.1 ends at U+1FBF9. */
const LAST_CODE_POINT = 0x1fbff;

function digitTable(): Map<number, string> {
  if (table !== undefined) {
    return table;
  }
  const built = new Map<number, string>();
  const isDigit = /^\p{Nd}$/u;
  let runStart = -1;
  for (let cp = 0x80; cp <= LAST_CODE_POINT; cp++) {
    if (!isDigit.test(String.fromCodePoint(cp))) {
      runStart = -1;
      continue;
    }
    if (runStart < 0) {
      runStart = cp;
    }
    built.set(cp, String((cp - runStart) % 10));
  }
  table = built;
  return built;
}

/** Replaces every non-ASCII decimal digit of `text` with its ASCII digit. */
export function toAsciiDigits(text: string): string {
  if (!/[\u0080-\u{10ffff}]/u.test(text)) {
    return text;
  }
  return text.replace(/\p{Nd}/gu, (digit) => digitTable().get(digit.codePointAt(0) ?? 0) ?? digit);
}
