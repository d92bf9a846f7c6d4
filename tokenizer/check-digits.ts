/**
 * Check digit schemes that format-preserving tokens keep valid: the Luhn
 * algorithm (ISO/IEC 7812-1, payment card numbers and many national ids) and
 * the ISO 7064 MOD 97-10 check of IBANs (ISO 13616).
 */

/** Returns the Luhn check digit to append to `payload`, a string of ASCII digits. */
export function luhnCheckDigit(payload: string): string {
  let sum = 0;
  // The digit next to the check digit is doubled, then every second one going left.
  for (let index = payload.length - 1, double = true; index >= 0; index--, double = !double) {
    let digit = payload.charCodeAt(index) - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) {
        digit -= 9;
      }
    }
    sum += digit;
  }
  return String((10 - (sum % 10)) % 10);
}

/** Reports whether `number`, a string of at least two ASCII digits, ends with a valid Luhn check digit. */
export function isLuhnValid(number: string): boolean {
  return /^[0-9]{2,}$/.test(number) && luhnCheckDigit(number.slice(0, -1)) === number.slice(-1);
}

/** Remainder modulo 97 of a string of digits and uppercase letters, where A to Z count as 10 to 35. */
function mod97(text: string): number {
  let remainder = 0;
  for (const character of text) {
    const code = character.charCodeAt(0);
    const value = code >= 65 ? code - 55 : code - 48;
    remainder = value >= 10 ? (remainder * 100 + value) % 97 : (remainder * 10 + value) % 97;
  }
  return remainder;
}

/** IBAN shape: country code, two check digits, and a BBAN of 11 to 30 digits or uppercase letters (ISO 13616). */
export const IBAN_SHAPE = /^[A-Z]{2}[0-9]{2}[0-9A-Z]{11,30}$/;

/** Returns the two IBAN check digits of a country code and a BBAN. */
export function ibanCheckDigits(countryCode: string, bban: string): string {
  return String(98 - mod97(`${bban}${countryCode}00`)).padStart(2, '0');
}

/** Reports whether `iban` (no spaces, uppercase) has the IBAN shape and passes the MOD 97-10 check. */
export function isIbanValid(iban: string): boolean {
  return IBAN_SHAPE.test(iban) && mod97(`${iban.slice(4)}${iban.slice(0, 4)}`) === 1;
}
