import { createHash } from 'node:crypto';
import { DomicileError, type EmailDomainMode } from '../policy/index.ts';
import { LOWERCASE_ALPHANUMERIC, requireDomainFloor, type FormatCipher } from './fp-cipher.ts';

/**
 * Format-preserving email tokens. The local part keeps its length, and every
 * character that is not an ASCII lowercase letter or digit (dots, `+`, `-`,
 * `_` and the other RFC 5322 atext symbols) stays in place. Its letters and
 * digits are encrypted together with FF1 over `0-9a-z`, so the result is again
 * a dot-atom. The domain is either kept, or encrypted and written as labels of
 * `0-9a-z` under the reserved top-level domain `.invalid` (RFC 2606), which no
 * mail is ever delivered to.
 *
 * The tweak strings below are part of every stored token: never change them.
 */
const LOCAL_TWEAK_PREFIX = 'domicile:email-local:';
const DOMAIN_TWEAK = Buffer.from('domicile:email-domain', 'utf8');
const RESERVED_TLD = '.invalid';

/** Digits of the bijective base-38 numeration of a domain; a domain's first character never maps to zero. */
const DOMAIN_SYMBOLS = 'abcdefghijklmnopqrstuvwxyz0123456789.-';
/** Encrypted domains are padded to a multiple of this many base-36 digits, so a token shows the domain length only roughly. */
const DOMAIN_BLOCK = 8;
const MAX_LABEL_LENGTH = 63;
const MAX_DOMAIN_LENGTH = 253;

/** RFC 5322 dot-atom of ASCII atext; normalized local parts with other characters are rejected. */
const ASCII_DOT_ATOM = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*$/;
const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;
const ALPHANUMERIC = /[0-9a-z]/g;

function notAnEmailToken(): DomicileError {
  return new DomicileError('invalid_value', 'is not a format-preserving email token of this field');
}

/** Reports whether `domain` has the form that email normalization gives: two or more lowercase labels, not all digits at the end. */
function isNormalizedDomain(domain: string): boolean {
  const labels = domain.split('.');
  return domain.length <= MAX_DOMAIN_LENGTH && labels.length >= 2 && labels.every((label) => DNS_LABEL.test(label)) && !/^[0-9]+$/.test(labels.at(-1) ?? '');
}

function domainToNumber(domain: string): bigint {
  let value = 0n;
  for (const character of domain) {
    value = value * 38n + BigInt(DOMAIN_SYMBOLS.indexOf(character) + 1);
  }
  return value;
}

function numberToDomain(value: bigint): string {
  let domain = '';
  for (let rest = value; rest > 0n; rest /= 38n) {
    rest -= 1n;
    domain = (DOMAIN_SYMBOLS[Number(rest % 38n)] ?? '') + domain;
  }
  return domain;
}

function base36ToNumber(digits: string): bigint {
  let value = 0n;
  for (const character of digits) {
    value = value * 36n + BigInt(LOWERCASE_ALPHANUMERIC.indexOf(character));
  }
  return value;
}

function encryptDomain(cipher: FormatCipher, domain: string): string {
  const digits = domainToNumber(domain).toString(36);
  const padded = digits.padStart(Math.ceil(digits.length / DOMAIN_BLOCK) * DOMAIN_BLOCK, '0');
  const encrypted = cipher.crypt(padded, DOMAIN_TWEAK, LOWERCASE_ALPHANUMERIC);
  const labels: string[] = [];
  for (let start = 0; start < encrypted.length; start += MAX_LABEL_LENGTH) {
    labels.push(encrypted.slice(start, start + MAX_LABEL_LENGTH));
  }
  const tokenDomain = labels.join('.') + RESERVED_TLD;
  if (tokenDomain.length > MAX_DOMAIN_LENGTH) {
    throw new DomicileError('invalid_value', `has a domain too long for a format-preserving token (at most about 235 characters)`);
  }
  return tokenDomain;
}

function decryptDomain(cipher: FormatCipher, tokenDomain: string): string {
  if (!tokenDomain.endsWith(RESERVED_TLD)) {
    throw notAnEmailToken();
  }
  const labels = tokenDomain.slice(0, -RESERVED_TLD.length).split('.');
  const digits = labels.join('');
  // encryptDomain cuts labels of exactly 63 characters, and only the last one may be shorter.
  const wellFormed = labels.every((label, index) => (index === labels.length - 1 ? label.length > 0 : label.length === MAX_LABEL_LENGTH));
  if (!wellFormed || digits.length % DOMAIN_BLOCK !== 0 || !/^[0-9a-z]+$/.test(digits)) {
    throw notAnEmailToken();
  }
  const domain = numberToDomain(base36ToNumber(cipher.crypt(digits, DOMAIN_TWEAK, LOWERCASE_ALPHANUMERIC)));
  if (!isNormalizedDomain(domain)) {
    throw notAnEmailToken();
  }
  return domain;
}

/**
 * Encrypts or decrypts the letters and digits of a local part. The tweak binds
 * the positions of the other characters and the clear domain, so the same
 * local part at two domains gives two unrelated tokens.
 */
function cryptLocal(cipher: FormatCipher, local: string, clearDomain: string): string {
  const payload = local.match(ALPHANUMERIC)?.join('') ?? '';
  requireDomainFloor(payload.length, LOWERCASE_ALPHANUMERIC, 'letters and digits in the local part');
  const template = local.replace(ALPHANUMERIC, '\u0000');
  const tweak = createHash('sha256').update(`${LOCAL_TWEAK_PREFIX}${template}@${clearDomain}`, 'utf8').digest();
  const crypted = cipher.crypt(payload, tweak, LOWERCASE_ALPHANUMERIC);
  let next = 0;
  return local.replace(ALPHANUMERIC, () => crypted[next++] ?? '');
}

/**
 * Returns the token of a normalized email address (`encrypt`), or the
 * normalized address of a token. Throws DomicileError `invalid_value` for a
 * local part with characters outside ASCII, and DomainFloorError for a local
 * part with fewer than 4 letters and digits (36^4 is the first power of 36
 * above 1,000,000).
 */
export function transformEmail(cipher: FormatCipher, text: string, domainMode: EmailDomainMode): string {
  const at = text.lastIndexOf('@');
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (at <= 0 || !ASCII_DOT_ATOM.test(local)) {
    throw new DomicileError('invalid_value', 'format-preserving email tokens need a local part of ASCII letters, digits and dot-atom symbols');
  }

  if ((cipher.encrypt || domainMode === 'keep') && !isNormalizedDomain(domain)) {
    throw new DomicileError('invalid_value', 'has an invalid domain: expected a normalized host name such as example.com');
  }

  let clearDomain = domain;
  let outputDomain = domain;
  if (domainMode === 'tokenize') {
    clearDomain = cipher.encrypt ? domain : decryptDomain(cipher, domain);
    outputDomain = cipher.encrypt ? encryptDomain(cipher, domain) : clearDomain;
  }
  return `${cryptLocal(cipher, local, clearDomain)}@${outputDomain}`;
}
