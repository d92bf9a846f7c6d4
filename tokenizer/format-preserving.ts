import { getCountries, getCountryCallingCode } from 'libphonenumber-js';
import { DomicileError, type CheckDigit, type EmailDomainMode, type FieldType } from '../policy/index.ts';
import { transformIban, transformLuhn } from './fp-check-digit.ts';
import { DIGITS, DomainFloorError, ff1Cipher, floorCheckCipher, type FormatCipher } from './fp-cipher.ts';
import { transformEmail } from './fp-email.ts';
import type { Keyring } from './keyring.ts';

export { DomainFloorError } from './fp-cipher.ts';

/**
 * Format-preserving tokens, built on FF1 with the keyring's `ff1` key of the
 * namespace (AES-256):
 * - phone (E.164): `+`, the country calling code and the digit count are kept,
 *   the national significant number is encrypted with the calling code as tweak;
 * - email: a valid `local@domain` address (fp-email.ts);
 * - `checkDigit: luhn` or `iban-mod97`: a valid check digit (fp-check-digit.ts);
 * - any other value made only of ASCII digits: length and leading zeros are
 *   kept, so `012345672` gives another 9-digit string.
 * The tweak strings below are part of every stored token: never change them.
 *
 * A format-preserving token cannot carry its key version, so after a key
 * rotation new tokens differ from old ones, and detokenizing an old token needs
 * the version it was made with.
 */
const DIGITS_TWEAK = Buffer.from('domicile:digits', 'utf8');
const PHONE_TWEAK_PREFIX = 'domicile:phone:+';

let callingCodes: ReadonlySet<string> | undefined;

/** Non-geographic calling codes of ITU-T E.164 (global services), which no country of libphonenumber-js lists. */
const NON_GEOGRAPHIC_CODES = ['800', '808', '870', '878', '881', '882', '883', '888', '979'];

/** Country calling codes; they are prefix-free, as ITU-T E.164 requires. */
function knownCallingCodes(): ReadonlySet<string> {
  callingCodes ??= new Set([...getCountries().map((country) => getCountryCallingCode(country)), ...NON_GEOGRAPHIC_CODES]);
  return callingCodes;
}

/** Policy options of a format-preserving field (`token.checkDigit`, `token.emailDomain`). */
export interface FormatPreservingOptions {
  checkDigit?: CheckDigit | undefined;
  emailDomain?: EmailDomainMode | undefined;
}

/** Splits an E.164 number into calling code and national significant number. */
function splitE164(phone: string): { callingCode: string; national: string } {
  if (!/^\+[0-9]{4,15}$/.test(phone)) {
    throw new DomicileError('invalid_value', 'is not a phone number in E.164 form');
  }
  for (let length = 1; length <= 3; length++) {
    const callingCode = phone.slice(1, 1 + length);
    if (knownCallingCodes().has(callingCode)) {
      return { callingCode, national: phone.slice(1 + length) };
    }
  }
  throw new DomicileError('invalid_value', 'has an unknown country calling code');
}

/** FF1 needs 6 digits for a domain of 1,000,000 values. */
const MIN_PHONE_DIGITS = 6;

function transformPhone(cipher: FormatCipher, text: string): string {
  const { callingCode, national } = splitE164(text);
  if (national.length < MIN_PHONE_DIGITS) {
    throw new DomainFloorError(`has a national number shorter than the ${MIN_PHONE_DIGITS} digits that format-preserving tokens need`);
  }
  return `+${callingCode}${cipher.crypt(national, Buffer.from(PHONE_TWEAK_PREFIX + callingCode, 'utf8'), DIGITS)}`;
}

/** Picks the format of a field by its check digit option, then by its type. */
function transformValue(cipher: FormatCipher, type: FieldType, text: string, options: FormatPreservingOptions): string {
  if (options.checkDigit === 'luhn') {
    return transformLuhn(cipher, text);
  }
  if (options.checkDigit === 'iban-mod97') {
    return transformIban(cipher, text);
  }
  if (type === 'phone') {
    return transformPhone(cipher, text);
  }
  if (type === 'email') {
    return transformEmail(cipher, text, options.emailDomain ?? 'tokenize');
  }
  if (!/^[0-9]+$/.test(text)) {
    throw new DomicileError('invalid_value', 'format-preserving tokens need a phone number, an email address or a string of digits');
  }
  return cipher.crypt(text, DIGITS_TWEAK, DIGITS);
}

function keyFor(keyring: Keyring, namespace: string, version: number | undefined): Buffer {
  return keyring.derive('ff1', namespace, version ?? keyring.currentVersion);
}

/**
 * Returns the format-preserving token of a normalized value. Throws
 * DomicileError `invalid_value` if the value does not fit the field's format,
 * and its subclass DomainFloorError if the part to encrypt is too short for
 * FF1 (a domain below 1,000,000 values, such as fewer than 6 digits).
 */
export function formatPreservingToken(
  keyring: Keyring,
  namespace: string,
  type: FieldType,
  normalized: string,
  version?: number,
  options: FormatPreservingOptions = {},
): string {
  return transformValue(ff1Cipher(keyFor(keyring, namespace, version), true), type, normalized, options);
}

/** Returns the normalized value of a format-preserving token made with the same namespace, key version and options. */
export function formatPreservingDetokenize(
  keyring: Keyring,
  namespace: string,
  type: FieldType,
  token: string,
  version?: number,
  options: FormatPreservingOptions = {},
): string {
  return transformValue(ff1Cipher(keyFor(keyring, namespace, version), false), type, token, options);
}

/**
 * Reports whether a normalized value is too short for a format-preserving
 * token (DomainFloorError), without running FF1. Other problems of the value
 * give false here and surface when it is tokenized.
 */
export function isBelowDomainFloor(type: FieldType, normalized: string, options: FormatPreservingOptions = {}): boolean {
  try {
    transformValue(floorCheckCipher, type, normalized, options);
    return false;
  } catch (error) {
    if (error instanceof DomainFloorError) {
      return true;
    }
    return false;
  }
}
