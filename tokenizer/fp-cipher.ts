import { DomicileError } from '../policy/index.ts';
import { FF1, MIN_DOMAIN_SIZE } from './ff1.ts';

/** Alphabets of the format-preserving tokens; each FF1 numeral is an index into one of them. Stored tokens depend on them: never change them. */
export const DIGITS = '0123456789';
export const LOWERCASE_ALPHANUMERIC = '0123456789abcdefghijklmnopqrstuvwxyz';
export const UPPERCASE_LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/**
 * A value whose FF1 domain is below 1,000,000 (radix^length, the floor of NIST
 * SP 800-38G Rev. 1). Its code is `invalid_value`; a field whose policy sets
 * `fallback: random` gets a random token instead.
 */
export class DomainFloorError extends DomicileError {
  constructor(message: string) {
    super('invalid_value', message);
    this.name = 'DomainFloorError';
  }
}

/** One direction of FF1 under one key: encrypts or decrypts `text`, whose characters all come from `alphabet`. */
export interface FormatCipher {
  readonly encrypt: boolean;
  crypt(text: string, tweak: Buffer, alphabet: string): string;
}

/** Throws DomainFloorError when `length` characters of `alphabet` give fewer than 1,000,000 values. */
export function requireDomainFloor(length: number, alphabet: string, unit: string): void {
  if (alphabet.length ** length < MIN_DOMAIN_SIZE) {
    let needed = 1;
    while (alphabet.length ** needed < MIN_DOMAIN_SIZE) {
      needed++;
    }
    throw new DomainFloorError(`has ${length} ${unit}, fewer than the ${needed} that format-preserving tokens need`);
  }
}

/** FF1 instances by derived key, then by alphabet; building one costs an AES key schedule. */
const instances = new WeakMap<Buffer, Map<string, FF1>>();

function ff1For(key: Buffer, alphabet: string): FF1 {
  let byAlphabet = instances.get(key);
  if (byAlphabet === undefined) {
    byAlphabet = new Map();
    instances.set(key, byAlphabet);
  }
  let ff1 = byAlphabet.get(alphabet);
  if (ff1 === undefined) {
    ff1 = new FF1(key, alphabet.length, alphabet);
    byAlphabet.set(alphabet, ff1);
  }
  return ff1;
}

/** Returns the FF1 cipher of a derived 32-byte key (AES-256). */
export function ff1Cipher(key: Buffer, encrypt: boolean): FormatCipher {
  return {
    encrypt,
    crypt(text, tweak, alphabet) {
      requireDomainFloor(text.length, alphabet, 'characters to encrypt');
      const ff1 = ff1For(key, alphabet);
      return encrypt ? ff1.encrypt(text, tweak) : ff1.decrypt(text, tweak);
    },
  };
}

/**
 * A cipher that checks the domain floor and returns its input unchanged. It
 * runs a format's parsing and checks without any AES, to find out whether a
 * value needs the random fallback.
 */
export const floorCheckCipher: FormatCipher = {
  encrypt: true,
  crypt(text, _tweak, alphabet) {
    requireDomainFloor(text.length, alphabet, 'characters to encrypt');
    return text;
  },
};
