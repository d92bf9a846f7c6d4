import { DomicileError } from '../policy/index.ts';
import { IBAN_SHAPE, ibanCheckDigits, isIbanValid, isLuhnValid, luhnCheckDigit } from './check-digits.ts';
import { DIGITS, UPPERCASE_LETTERS, type FormatCipher } from './fp-cipher.ts';

/**
 * Format-preserving tokens of identifiers with a check digit. The payload is
 * encrypted with FF1 and the check digit computed again, so the token passes
 * the same validation as the value. Values whose check digit is wrong are
 * rejected: recomputing it would otherwise change the value on the way back.
 *
 * The tweak strings below are part of every stored token: never change them.
 */
const LUHN_TWEAK = Buffer.from('domicile:luhn', 'utf8');
const IBAN_TWEAK_PREFIX = 'domicile:iban:';

/** Fewer letters than this (26^5 is the first power of 26 above 1,000,000) stay in clear; they are bank codes, not account numbers. */
const MIN_ENCRYPTED_LETTERS = 5;

/** Luhn numbers: every digit but the last is encrypted, then the Luhn check digit is appended. */
export function transformLuhn(cipher: FormatCipher, text: string): string {
  if (!/^[0-9]{2,}$/.test(text)) {
    throw new DomicileError('invalid_value', 'is not a number with a Luhn check digit: expected ASCII digits only');
  }
  if (!isLuhnValid(text)) {
    throw new DomicileError('invalid_value', 'has an invalid Luhn check digit');
  }
  const payload = cipher.crypt(text.slice(0, -1), LUHN_TWEAK, DIGITS);
  return payload + luhnCheckDigit(payload);
}

/**
 * IBANs: the country code stays, the BBAN keeps the position of each digit
 * and letter, so it keeps the country's BBAN layout. Its digits are encrypted
 * together, its letters too when there are at least 5 of them, and the two
 * check digits are computed again (ISO 7064 MOD 97-10).
 */
export function transformIban(cipher: FormatCipher, text: string): string {
  if (!IBAN_SHAPE.test(text)) {
    throw new DomicileError('invalid_value', 'is not an IBAN: expected a country code, two check digits and 11 to 30 letters or digits');
  }
  if (!isIbanValid(text)) {
    throw new DomicileError('invalid_value', 'has invalid IBAN check digits');
  }
  const countryCode = text.slice(0, 2);
  const bban = text.slice(4);
  const template = bban.replace(/[0-9]/g, '9').replace(/[A-Z]/g, 'A');
  const tweakOf = (part: string): Buffer => Buffer.from(`${IBAN_TWEAK_PREFIX}${countryCode}:${template}:${part}`, 'utf8');

  const digits = bban.replace(/[A-Z]/g, '');
  const letters = bban.replace(/[0-9]/g, '');
  const cryptedDigits = cipher.crypt(digits, tweakOf('digits'), DIGITS);
  const cryptedLetters = letters.length >= MIN_ENCRYPTED_LETTERS ? cipher.crypt(letters, tweakOf('letters'), UPPERCASE_LETTERS) : letters;

  let nextDigit = 0;
  let nextLetter = 0;
  const outputBban = bban.replace(/[0-9A-Z]/g, (character) =>
    character <= '9' ? (cryptedDigits[nextDigit++] ?? '') : (cryptedLetters[nextLetter++] ?? ''),
  );
  return `${countryCode}${ibanCheckDigits(countryCode, outputBban)}${outputBban}`;
}
