import { getCountries, getCountryCallingCode } from 'libphonenumber-js';
import { DomicileError, type FieldType } from '../policy/index.ts';
import { FF1 } from './ff1.ts';
import type { Keyring } from './keyring.ts';

/**
 * Format-preserving tokens, built on FF1 with radix 10 and the keyring's `ff1`
 * key of the namespace (AES-256):
 * - phone (E.164): `+`, the country calling code and the digit count are kept,
 *   the national significant number is encrypted with the calling code as tweak;
 * - any other value made only of ASCII digits: length and leading zeros are
 *   kept, so `012345672` gives another 9-digit string.
 * The tweak strings below are part of every stored token: never change them.
 *
 * NOTE: a format-preserving token cannot carry its key version, so after a key
 * rotation new tokens differ from old ones, and detokenizing an old token needs
 * the version it was made with.
 */
const DIGITS_TWEAK = Buffer.from('domicile:digits', 'utf8');
const PHONE_TWEAK_PREFIX = 'domicile:phone:+';

const instances = new WeakMap<Buffer, FF1>();

let callingCodes: ReadonlySet<string> | undefined;

/** Non-geographic calling codes of ITU-T E.164 (global services), which no country of libphonenumber-js lists. */
const NON_GEOGRAPHIC_CODES = ['800', '808', '870', '878', '881', '882', '883', '888', '979'];

/** Country calling codes; they are prefix-free, as ITU-T E.164 requires. */
function knownCallingCodes(): ReadonlySet<string> {
  callingCodes ??= new Set([...getCountries().map((country) => getCountryCallingCode(country)), ...NON_GEOGRAPHIC_CODES]);
  return callingCodes;
}

function cipherFor(keyring: Keyring, namespace: string, version: number | undefined): FF1 {
  const key = keyring.derive('ff1', namespace, version ?? keyring.currentVersion);
  let ff1 = instances.get(key);
  if (ff1 === undefined) {
    ff1 = new FF1(key, 10);
    instances.set(key, ff1);
  }
  return ff1;
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

function transform(
  keyring: Keyring,
  namespace: string,
  type: FieldType,
  text: string,
  version: number | undefined,
  encrypt: boolean,
): string {
  const ff1 = cipherFor(keyring, namespace, version);
  const crypt = (digits: string, tweak: Buffer): string => (encrypt ? ff1.encrypt(digits, tweak) : ff1.decrypt(digits, tweak));

  if (type === 'phone') {
    const { callingCode, national } = splitE164(text);
    if (national.length < ff1.minLength()) {
      throw new DomicileError(
        'invalid_value',
        `has a national number shorter than the ${ff1.minLength()} digits that format-preserving tokens need`,
      );
    }
    return `+${callingCode}${crypt(national, Buffer.from(PHONE_TWEAK_PREFIX + callingCode, 'utf8'))}`;
  }

  if (!/^[0-9]+$/.test(text)) {
    throw new DomicileError('invalid_value', 'format-preserving tokens need a phone number or a string of digits');
  }
  return crypt(text, DIGITS_TWEAK);
}

/**
 * Returns the format-preserving token of a normalized value. Throws
 * DomicileError `invalid_value` if the value is neither a phone number nor a
 * digit string, or has fewer than 6 digits to encrypt (FF1 needs a domain of at
 * least 1,000,000 values).
 */
export function formatPreservingToken(
  keyring: Keyring,
  namespace: string,
  type: FieldType,
  normalized: string,
  version?: number,
): string {
  return transform(keyring, namespace, type, normalized, version, true);
}

/** Returns the normalized value of a format-preserving token made with the same namespace and key version. */
export function formatPreservingDetokenize(
  keyring: Keyring,
  namespace: string,
  type: FieldType,
  token: string,
  version?: number,
): string {
  return transform(keyring, namespace, type, token, version, false);
}
