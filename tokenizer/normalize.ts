/**
 * Normalization turns what a user typed into the one canonical form that is
 * stored, tokenized and indexed, so equal values give equal tokens.
 *
 * Decisions (stored tokens and blind indexes depend on them: changing one
 * changes the token of existing values):
 * - Text of every type is Unicode NFC, so precomposed and decomposed input
 *   (`ë` and `e` + U+0308) are equal. NFKC is not applied, because it would
 *   merge characters that differ in meaning (`²` and `2`).
 * - NUL and other control characters (Unicode Cc) are rejected. Only `string`
 *   accepts line feed and tab, and it turns CR LF and a lone CR into LF.
 *   Lone surrogates are rejected. Leading and trailing white space is trimmed.
 * - Length limits count Unicode code points, not grapheme clusters, because
 *   cluster rules change with the ICU version of Node.
 * - email: the domain is lowercased and converted to ASCII (IDNA, punycode),
 *   so `münchen.example` and `xn--mnchen-3ya.example` are equal. Plus tags are
 *   kept, because `a+tag@` is a different mailbox at many providers. ASCII
 *   letters of the local part are lowercased: RFC 5321 lets a host treat case
 *   as significant but discourages it, and mail systems in use ignore it.
 *   Non-ASCII letters of the local part keep their case, because Unicode case
 *   mapping depends on the language (Turkish dotted and dotless i).
 * - phone: E.164 through libphonenumber-js, reading national numbers in the
 *   policy's default region. Decimal digits of any script are accepted. A
 *   number only has to be possible (right length for its country), not known
 *   to be assigned, because assignment data goes stale. Extensions are rejected.
 * - date: `YYYY-MM-DD`. A timestamp keeps its calendar date as written, before
 *   any offset is applied: `1988-07-14T23:30:00-05:00` is `1988-07-14`.
 * - country: ISO 3166-1 alpha-2, uppercase, checked against the assigned codes.
 * - postalCode: uppercase, inner white space collapsed to one space.
 * - nationalId: spaces and hyphens removed, uppercase.
 * - number: a finite JSON number or a decimal string. boolean: true or false,
 *   or the strings `true` and `false`.
 */
import { domainToASCII } from 'node:url';
import { parsePhoneNumberWithError } from 'libphonenumber-js';
import type { CountryCode } from 'libphonenumber-js';
import { DomicileError, type FieldType } from '../policy/index.ts';
import { COUNTRY_CODES } from './countries.ts';
import { toAsciiDigits } from './digits.ts';

export type NormalizedValue = string | number | boolean;

export interface NormalizeOptions {
  /** ISO 3166-1 alpha-2 region used to read national phone numbers. */
  defaultRegion: string;
  /** Maximum length in Unicode code points after normalization. */
  maxLength: number;
}

function invalid(problem: string): DomicileError {
  return new DomicileError('invalid_value', problem);
}

/** Control characters (Unicode Cc) but line feed and tab. */
const CONTROL_BUT_LF_TAB = /(?![\n\t])\p{Cc}/u;
const CONTROL = /\p{Cc}/u;
/** In a `u` regular expression a valid surrogate pair is one code point, so only lone surrogates match. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Checks and NFC-normalizes text; rejects the value without naming it. */
function cleanText(raw: unknown, allowLineBreaks: boolean): string {
  if (typeof raw !== 'string') {
    throw invalid('must be a string');
  }
  if (LONE_SURROGATE.test(raw)) {
    throw invalid('contains a lone surrogate (invalid UTF-16)');
  }
  if (raw.includes('\u0000')) {
    throw invalid('contains a NUL character');
  }
  let text = raw;
  if (allowLineBreaks) {
    text = text.replace(/\r\n?/g, '\n');
  }
  if ((allowLineBreaks ? CONTROL_BUT_LF_TAB : CONTROL).test(text)) {
    throw invalid(allowLineBreaks ? 'contains a control character' : 'contains a control character or line break');
  }
  text = text.normalize('NFC').trim();
  if (text.length === 0) {
    throw invalid('must not be empty');
  }
  return text;
}

function checkLength(text: string, maxLength: number): string {
  let codePoints = 0;
  for (const _ of text) {
    codePoints++;
    if (codePoints > maxLength) {
      throw invalid(`is longer than ${maxLength} characters`);
    }
  }
  return text;
}

/** RFC 5322 atext plus any non-ASCII character (RFC 6531), dot-separated. */
const LOCAL_PART = /^[\p{L}\p{M}\p{N}!#$%&'*+\-/=?^_`{|}~\u0080-\u{10ffff}]+(?:\.[\p{L}\p{M}\p{N}!#$%&'*+\-/=?^_`{|}~\u0080-\u{10ffff}]+)*$/u;
const MAX_LOCAL_PART_BYTES = 64;
const MAX_DOMAIN_LENGTH = 253;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function normalizeEmail(raw: unknown): string {
  const text = cleanText(raw, false);
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1) {
    throw invalid('is not an email address: expected local-part@domain');
  }
  const local = text.slice(0, at).replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
  if (!LOCAL_PART.test(local) || /\s/u.test(local)) {
    throw invalid('has an invalid local part (quoted local parts are not accepted)');
  }
  if (Buffer.byteLength(local, 'utf8') > MAX_LOCAL_PART_BYTES) {
    throw invalid(`has a local part longer than ${MAX_LOCAL_PART_BYTES} bytes`);
  }
  return `${local}@${normalizeDomain(text.slice(at + 1))}`;
}

function normalizeDomain(domainText: string): string {
  const withoutRoot = domainText.endsWith('.') ? domainText.slice(0, -1) : domainText;
  const domain = domainToASCII(withoutRoot.toLowerCase());
  if (domain === '' || domain.length > MAX_DOMAIN_LENGTH) {
    throw invalid('has an invalid domain');
  }
  const labels = domain.split('.');
  if (labels.length < 2 || !labels.every((label) => DNS_LABEL.test(label)) || /^[0-9]+$/.test(labels.at(-1) ?? '')) {
    throw invalid('has an invalid domain: expected a host name such as example.com');
  }
  return domain;
}

function normalizePhone(raw: unknown, defaultRegion: string): string {
  // U+FF0B is the fullwidth plus sign of East Asian input methods.
  const text = toAsciiDigits(cleanText(raw, false)).replace(/\uff0b/g, '+');
  let phone;
  try {
    phone = parsePhoneNumberWithError(text, { defaultCountry: defaultRegion as CountryCode });
  } catch {
    throw invalid('is not a phone number');
  }
  if (phone.ext !== undefined) {
    throw invalid('has an extension, which phone fields do not accept');
  }
  if (!phone.isPossible()) {
    throw invalid('is not a possible phone number for its country');
  }
  return phone.number;
}

const DATE_OR_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(Z|[+-](\d{2}):?(\d{2}))?)?$/i;

function normalizeDate(raw: unknown): string {
  const text = cleanText(raw, false);
  const match = DATE_OR_TIMESTAMP.exec(text);
  if (match === null) {
    throw invalid('is not a date: expected YYYY-MM-DD or an ISO 8601 timestamp');
  }
  const [, yearText, monthText, dayText, hour, minute, second, , offsetHour, offsetMinute] = match;
  const year = Number(yearText);
  const month = Number(monthText);
  const day = Number(dayText);
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth) {
    throw invalid('is not a calendar date');
  }
  const outOfRange = (part: string | undefined, max: number): boolean => part !== undefined && Number(part) > max;
  if (outOfRange(hour, 23) || outOfRange(minute, 59) || outOfRange(second, 60) || outOfRange(offsetHour, 23) || outOfRange(offsetMinute, 59)) {
    throw invalid('has an invalid time or offset');
  }
  return `${yearText}-${monthText}-${dayText}`;
}

function normalizeCountry(raw: unknown): string {
  const code = cleanText(raw, false).toUpperCase();
  if (!COUNTRY_CODES.has(code)) {
    throw invalid('is not an ISO 3166-1 alpha-2 country code');
  }
  return code;
}

function normalizePostalCode(raw: unknown): string {
  const code = toAsciiDigits(cleanText(raw, false)).toUpperCase().replace(/\s+/gu, ' ');
  if (!/^[\p{L}\p{N}](?:[\p{L}\p{N} -]*[\p{L}\p{N}])?$/u.test(code)) {
    throw invalid('is not a postal code: use letters, digits, spaces and hyphens');
  }
  return code;
}

function normalizeNationalId(raw: unknown): string {
  const id = toAsciiDigits(cleanText(raw, false)).replace(/[\s\-\u2010-\u2015]+/gu, '').toUpperCase();
  if (!/^[\p{L}\p{N}./]+$/u.test(id)) {
    throw invalid('is not a national id: use letters, digits, dots and slashes');
  }
  return id;
}

const DECIMAL = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

function normalizeNumber(raw: unknown): number {
  let value: number;
  if (typeof raw === 'number') {
    value = raw;
  } else if (typeof raw === 'string' && DECIMAL.test(raw.trim())) {
    value = Number(raw.trim());
  } else {
    throw invalid('must be a number');
  }
  if (!Number.isFinite(value)) {
    throw invalid('must be a finite number');
  }
  // Negative zero prints as 0 but would give its own token.
  return Object.is(value, -0) ? 0 : value;
}

function normalizeBoolean(raw: unknown): boolean {
  if (typeof raw === 'boolean') {
    return raw;
  }
  if (raw === 'true' || raw === 'false') {
    return raw === 'true';
  }
  throw invalid('must be true or false');
}

/**
 * Checks `raw` against the field type and returns its canonical form. Throws
 * DomicileError `invalid_value` whose message names the problem but neither
 * the value nor the path (the caller prefixes the path).
 */
export function normalizeValue(type: FieldType, raw: unknown, options: NormalizeOptions): NormalizedValue {
  switch (type) {
    case 'string':
      return checkLength(cleanText(raw, true), options.maxLength);
    case 'email':
      return checkLength(normalizeEmail(raw), options.maxLength);
    case 'phone':
      return checkLength(normalizePhone(raw, options.defaultRegion), options.maxLength);
    case 'date':
      return normalizeDate(raw);
    case 'postalCode':
      return checkLength(normalizePostalCode(raw), options.maxLength);
    case 'country':
      return normalizeCountry(raw);
    case 'nationalId':
      return checkLength(normalizeNationalId(raw), options.maxLength);
    case 'number':
      return normalizeNumber(raw);
    case 'boolean':
      return normalizeBoolean(raw);
  }
}
