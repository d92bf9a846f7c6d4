import { createCipheriv } from 'node:crypto';
import { DomicileError } from '../policy/index.ts';

/**
 * FF1 format-preserving encryption of NIST SP 800-38G (Rev. 1), over AES-128,
 * AES-192 or AES-256 by key length, for radix 2 to 36 (or any alphabet of 2 to
 * 36 distinct UTF-16 code units).
 *
 * Speed: the PRF's first block CIPH(P) depends only on the length and tweak
 * length, so it is computed once per pair. One AES-ECB cipher is reused for
 * every block, because ECB without padding keeps no state between `update`
 * calls. While radix^v stays below 2^44, each half is held as one JavaScript
 * number, which keeps all arithmetic exact without BigInt.
 */
export const DEFAULT_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz';

/** SP 800-38G Rev. 1 requires radix^minlen >= 1,000,000. */
export const MIN_DOMAIN_SIZE = 1_000_000;
const ROUNDS = 10;
/** Arbitrary caps that keep the BigInt path and the tweak buffer small. */
const MAX_LENGTH = 1024;
const MAX_TWEAK_BYTES = 256;
/** Above this, (value * 256 + byte) may exceed 2^53 and the BigInt path is used. */
const MAX_EXACT_MODULUS = 2 ** 44;
const EMPTY = Buffer.alloc(0);

interface LengthParameters {
  u: number;
  v: number;
  /** Byte length of NUM_radix(B) in Q. */
  b: number;
  /** Byte length of S. */
  d: number;
  /** CIPH(P), the CBC-MAC state after the first block. */
  y0: Buffer;
  /** True if radix^v < 2^44, so halves fit in exact numbers. */
  small: boolean;
}

function invalidInput(problem: string): DomicileError {
  return new DomicileError('invalid_value', problem);
}

export class FF1 {
  readonly radix: number;
  readonly alphabet: string;
  declare private readonly cipher: ReturnType<typeof createCipheriv>;
  /** Moduli below this use Number arithmetic; a subclass in tests lowers it to check the BigInt path. */
  protected readonly exactModulusLimit: number = MAX_EXACT_MODULUS;
  private readonly indexOf = new Int16Array(65536).fill(-1);
  private readonly scratch = Buffer.alloc(16);
  private readonly parameters = new Map<number, LengthParameters>();

  constructor(key: Buffer, radix: number, alphabet: string = DEFAULT_ALPHABET.slice(0, radix)) {
    if (key.length !== 16 && key.length !== 24 && key.length !== 32) {
      throw new DomicileError('internal', 'FF1 key must be 16, 24 or 32 bytes (AES-128, AES-192, AES-256)');
    }
    if (!Number.isInteger(radix) || radix < 2 || radix > 36) {
      throw new DomicileError('internal', 'FF1 radix must be an integer from 2 to 36');
    }
    if (alphabet.length !== radix || new Set(alphabet).size !== radix) {
      throw new DomicileError('internal', 'FF1 alphabet must have exactly radix distinct characters');
    }
    this.radix = radix;
    this.alphabet = alphabet;
    for (let i = 0; i < radix; i++) {
      this.indexOf[alphabet.charCodeAt(i)] = i;
    }
    const cipher = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
    cipher.setAutoPadding(false);
    // Non-enumerable, so the key schedule never shows up when an instance is inspected.
    Object.defineProperty(this, 'cipher', { value: cipher, enumerable: false });
  }

  encrypt(text: string, tweak: Buffer = EMPTY): string {
    return this.crypt(text, tweak, true);
  }

  decrypt(text: string, tweak: Buffer = EMPTY): string {
    return this.crypt(text, tweak, false);
  }

  /** Smallest length whose domain radix^length reaches 1,000,000. */
  minLength(): number {
    let length = 1;
    for (let size = this.radix; size < MIN_DOMAIN_SIZE; size *= this.radix) {
      length++;
    }
    return Math.max(length, 2);
  }

  private crypt(text: string, tweak: Buffer, encrypt: boolean): string {
    const n = text.length;
    if (n < this.minLength()) {
      throw invalidInput(
        `is too short for FF1: radix ${this.radix} needs at least ${this.minLength()} characters so that radix^length >= ${MIN_DOMAIN_SIZE}`,
      );
    }
    if (n > MAX_LENGTH) {
      throw invalidInput(`is too long for FF1: at most ${MAX_LENGTH} characters`);
    }
    if (tweak.length > MAX_TWEAK_BYTES) {
      throw new DomicileError('internal', `FF1 tweak must be at most ${MAX_TWEAK_BYTES} bytes`);
    }
    const numerals = this.toNumerals(text);
    const params = this.lengthParameters(n, tweak.length);

    // Q = T || [0]^((-t-b-1) mod 16) || [i]^1 || [NUM_radix(X)]^b; its constant
    // full blocks are chained into the CBC-MAC state once per call.
    const pad = (((-tweak.length - params.b - 1) % 16) + 16) % 16;
    const q = Buffer.alloc(tweak.length + pad + 1 + params.b);
    tweak.copy(q, 0);
    const fixedEnd = Math.floor((tweak.length + pad) / 16) * 16;
    let state = params.y0;
    for (let offset = 0; offset < fixedEnd; offset += 16) {
      state = this.cbcStep(state, q, offset);
    }

    const rounds = params.small ? this.roundsNumber : this.roundsBigInt;
    return rounds.call(this, numerals, params, q, fixedEnd, state, encrypt);
  }

  private roundsNumber(
    numerals: Uint8Array,
    params: LengthParameters,
    q: Buffer,
    fixedEnd: number,
    state: Buffer,
    encrypt: boolean,
  ): string {
    const { u, v, b } = params;
    const radix = this.radix;
    const modulusU = radix ** u;
    const modulusV = radix ** v;
    let a = numberOf(numerals, 0, u, radix);
    let c = numberOf(numerals, u, u + v, radix);
    const iOffset = q.length - b - 1;

    for (let step = 0; step < ROUNDS; step++) {
      const i = encrypt ? step : ROUNDS - 1 - step;
      const modulus = i % 2 === 0 ? modulusU : modulusV;
      q[iOffset] = i;
      writeNumber(q, q.length, b, encrypt ? c : a);
      const y = this.prfModulo(params, q, fixedEnd, state, modulus);
      if (encrypt) {
        const next = (a + y) % modulus;
        a = c;
        c = next;
      } else {
        const next = (((c - y) % modulus) + modulus) % modulus;
        c = a;
        a = next;
      }
    }
    return this.toText(a, u) + this.toText(c, v);
  }

  private roundsBigInt(
    numerals: Uint8Array,
    params: LengthParameters,
    q: Buffer,
    fixedEnd: number,
    state: Buffer,
    encrypt: boolean,
  ): string {
    const { u, v, b } = params;
    const radix = BigInt(this.radix);
    const modulusU = radix ** BigInt(u);
    const modulusV = radix ** BigInt(v);
    let a = bigIntOf(numerals, 0, u, radix);
    let c = bigIntOf(numerals, u, u + v, radix);
    const iOffset = q.length - b - 1;

    for (let step = 0; step < ROUNDS; step++) {
      const i = encrypt ? step : ROUNDS - 1 - step;
      const modulus = i % 2 === 0 ? modulusU : modulusV;
      q[iOffset] = i;
      writeBigInt(q, q.length, b, encrypt ? c : a);
      const s = this.prfBytes(params, q, fixedEnd, state);
      const y = BigInt(`0x${s.toString('hex')}`) % modulus;
      if (encrypt) {
        const next = (a + y) % modulus;
        a = c;
        c = next;
      } else {
        const next = (((c - y) % modulus) + modulus) % modulus;
        c = a;
        a = next;
      }
    }
    return this.bigIntToText(a, u) + this.bigIntToText(c, v);
  }

  /** Returns S of the round: R = PRF(P || Q), then R || CIPH(R xor [1]) || ..., cut to d bytes. */
  private prfBytes(params: LengthParameters, q: Buffer, fixedEnd: number, state: Buffer): Buffer {
    let r = state;
    for (let offset = fixedEnd; offset < q.length; offset += 16) {
      r = this.cbcStep(r, q, offset);
    }
    if (params.d <= 16) {
      return r.subarray(0, params.d);
    }
    const blocks = [r];
    for (let j = 1; j * 16 < params.d; j++) {
      r.copy(this.scratch);
      // [j]^16 is j as a 16-byte big-endian integer; j < 2^16 here.
      this.scratch[14] = (this.scratch[14] ?? 0) ^ (j >>> 8);
      this.scratch[15] = (this.scratch[15] ?? 0) ^ (j & 0xff);
      blocks.push(this.cipher.update(this.scratch));
    }
    return Buffer.concat(blocks).subarray(0, params.d);
  }

  /** NUM(S) mod `modulus`, computed byte by byte so every intermediate stays below 2^52. */
  private prfModulo(params: LengthParameters, q: Buffer, fixedEnd: number, state: Buffer, modulus: number): number {
    const s = this.prfBytes(params, q, fixedEnd, state);
    let y = 0;
    for (let k = 0; k < s.length; k++) {
      y = (y * 256 + (s[k] ?? 0)) % modulus;
    }
    return y;
  }

  /** Computes one CBC-MAC step, CIPH(state xor block), with the block at `offset` of `data`. */
  private cbcStep(state: Buffer, data: Buffer, offset: number): Buffer {
    const scratch = this.scratch;
    for (let k = 0; k < 16; k++) {
      scratch[k] = (state[k] ?? 0) ^ (data[offset + k] ?? 0);
    }
    return this.cipher.update(scratch);
  }

  private lengthParameters(n: number, tweakLength: number): LengthParameters {
    const cacheKey = n * (MAX_TWEAK_BYTES + 1) + tweakLength;
    const cached = this.parameters.get(cacheKey);
    if (cached !== undefined) {
      return cached;
    }
    const u = Math.floor(n / 2);
    const v = n - u;
    // v * log2(radix) is an integer only for a power-of-two radix, where Math.log2 is exact.
    const b = Math.ceil(Math.ceil(v * Math.log2(this.radix)) / 8);
    const d = 4 * Math.ceil(b / 4) + 4;
    const p = Buffer.alloc(16);
    p.set([1, 2, 1], 0);
    p.writeUIntBE(this.radix, 3, 3);
    p[6] = 10;
    p[7] = u % 256;
    p.writeUInt32BE(n, 8);
    p.writeUInt32BE(tweakLength, 12);
    const y0 = this.cipher.update(p);
    const params = { u, v, b, d, y0, small: this.radix ** v < this.exactModulusLimit };
    this.parameters.set(cacheKey, params);
    return params;
  }

  private toNumerals(text: string): Uint8Array {
    const numerals = new Uint8Array(text.length);
    for (let k = 0; k < text.length; k++) {
      const numeral = this.indexOf[text.charCodeAt(k)] ?? -1;
      if (numeral < 0) {
        throw invalidInput(`contains a character outside the FF1 alphabet of radix ${this.radix}`);
      }
      numerals[k] = numeral;
    }
    return numerals;
  }

  private toText(value: number, length: number): string {
    let out = '';
    let rest = value;
    for (let k = 0; k < length; k++) {
      out = this.alphabet.charAt(rest % this.radix) + out;
      rest = Math.floor(rest / this.radix);
    }
    return out;
  }

  private bigIntToText(value: bigint, length: number): string {
    const radix = BigInt(this.radix);
    const chars = new Array<string>(length);
    let rest = value;
    for (let k = length - 1; k >= 0; k--) {
      chars[k] = this.alphabet.charAt(Number(rest % radix));
      rest /= radix;
    }
    return chars.join('');
  }
}

/** NUM_radix of numerals[start..end), most significant first. */
function numberOf(numerals: Uint8Array, start: number, end: number, radix: number): number {
  let value = 0;
  for (let k = start; k < end; k++) {
    value = value * radix + (numerals[k] ?? 0);
  }
  return value;
}

function bigIntOf(numerals: Uint8Array, start: number, end: number, radix: bigint): bigint {
  let value = 0n;
  for (let k = start; k < end; k++) {
    value = value * radix + BigInt(numerals[k] ?? 0);
  }
  return value;
}

/** Writes `value` big-endian into the `length` bytes that end at `end`. */
function writeNumber(target: Buffer, end: number, length: number, value: number): void {
  let rest = value;
  for (let k = end - 1; k >= end - length; k--) {
    target[k] = rest % 256;
    rest = Math.floor(rest / 256);
  }
}

function writeBigInt(target: Buffer, end: number, length: number, value: bigint): void {
  let rest = value;
  for (let k = end - 1; k >= end - length; k--) {
    target[k] = Number(rest & 0xffn);
    rest >>= 8n;
  }
}
