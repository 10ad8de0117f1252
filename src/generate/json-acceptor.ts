// An incremental acceptor for JSON text over bytes: fed one byte at a time, it says whether the
// bytes so far can still be extended to valid JSON (RFC 8259, UTF-8) and whether they already form
// a complete value. Its state is a handful of integers, so it is copied and advanced cheaply: JSON
// mode tries every token's bytes on a copy. Two bounds beyond JSON itself keep generation sane.

/**
 * Whitespace bytes in a row between JSON tokens: room for a line break and pretty-printed
 * indentation (llama.cpp's json grammar allows a newline and 20 more), yet too few to loop on.
 */
export const MAX_JSON_WHITESPACE = 20;
/** Objects and arrays nested at most this deep: one 32-bit integer holds the kind of each level. */
export const MAX_JSON_DEPTH = 32;

// What comes next.
const START = 0;        // the top-level value (an object only, unless `anyValue`)
const VALUE = 1;        // a value (after ':' or an array's ',')
const ARRAY_FIRST = 2;  // a value or ']' (after '[')
const OBJECT_FIRST = 3; // a key or '}' (after '{')
const KEY = 4;          // a key (after an object's ',')
const COLON = 5;        // ':' (after a key)
const AFTER = 6;        // ',' or the container's closer (after a value in a container)
const STRING = 7;
const NUMBER = 8;
const LITERAL = 9;
const DONE = 10;        // the top-level value is complete: nothing more

// Where in a number: after '-', '0', integer digits, '.', fraction digits, 'e', the exponent's sign, its digits.
const N_MINUS = 0, N_ZERO = 1, N_INT = 2, N_DOT = 3, N_FRAC = 4, N_E = 5, N_ESIGN = 6, N_EXP = 7;
const numberMayEnd = (n: number) => n === N_ZERO || n === N_INT || n === N_FRAC || n === N_EXP;

const LITERALS = ['true', 'false', 'null'].map((w) => Array.from(w, (c) => c.charCodeAt(0)));

const isWhitespace = (b: number) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
const isDigit = (b: number) => b >= 0x30 && b <= 0x39;
const isHex = (b: number) => isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
/** What may follow a backslash in a string, besides 'u'. */
const isEscape = (b: number) => b === 0x22 || b === 0x5c || b === 0x2f || b === 0x62 || b === 0x66 || b === 0x6e || b === 0x72 || b === 0x74;

export class JsonAcceptor {
  private mode = START;
  /** Whitespace bytes in the current run. */
  private ws = 0;
  private depth = 0;
  /** Bit d: the container at depth d (0 = outermost) is an object. */
  private objects = 0;
  // In a string: is it a key, after a backslash, \u hex digits still to come, UTF-8 continuation
  // bytes still to come and the range the next one must fall in (overlongs and surrogates excluded).
  private key = false;
  private escape = false;
  private hex = 0;
  private utf8 = 0;
  private lo = 0x80;
  private hi = 0xbf;
  private num = N_MINUS;
  private literal = 0;
  private at = 0;

  /** @param anyValue the top level may be any value; by default it must be an object (JSON mode). */
  constructor(readonly anyValue = false) {}

  /** Whether the bytes so far are a whole JSON value. */
  get complete(): boolean {
    return this.mode === DONE || (this.mode === NUMBER && this.depth === 0 && numberMayEnd(this.num));
  }

  /** A copy that advances on its own. */
  clone(): JsonAcceptor {
    return new JsonAcceptor(this.anyValue).copyFrom(this);
  }

  /** Take `other`'s state (of an acceptor with the same `anyValue`). */
  copyFrom(other: JsonAcceptor): this {
    this.mode = other.mode; this.ws = other.ws; this.depth = other.depth; this.objects = other.objects;
    this.key = other.key; this.escape = other.escape; this.hex = other.hex;
    this.utf8 = other.utf8; this.lo = other.lo; this.hi = other.hi;
    this.num = other.num; this.literal = other.literal; this.at = other.at;
    return this;
  }

  /** Advance by `bytes`; false (and the state is then spoilt: advance a copy) when they cannot continue valid JSON. */
  push(bytes: ArrayLike<number>): boolean {
    for (let i = 0; i < bytes.length; i++) if (!this.pushByte(bytes[i])) return false;
    return true;
  }

  /** Advance by one byte; false (state spoilt) when it cannot continue valid JSON. */
  pushByte(b: number): boolean {
    switch (this.mode) {
      case STRING: return this.inString(b);
      case NUMBER: return this.inNumber(b);
      case LITERAL: {
        const word = LITERALS[this.literal];
        if (b !== word[this.at]) return false;
        if (++this.at === word.length) this.endValue();
        return true;
      }
      case DONE: return false;
    }
    // None before the top-level value (as llama.cpp's json grammar): generation starts with it.
    if (isWhitespace(b)) return this.mode !== START && ++this.ws <= MAX_JSON_WHITESPACE;
    this.ws = 0;
    switch (this.mode) {
      case START: return this.anyValue ? this.startValue(b) : b === 0x7b && this.startValue(b);
      case VALUE: return this.startValue(b);
      case ARRAY_FIRST: return b === 0x5d ? this.close() : this.startValue(b);
      case OBJECT_FIRST: return b === 0x7d ? this.close() : this.startKey(b);
      case KEY: return this.startKey(b);
      case COLON:
        if (b !== 0x3a) return false;
        this.mode = VALUE;
        return true;
      default: { // AFTER
        const inObject = (this.objects >>> (this.depth - 1)) & 1;
        if (b === 0x2c) {
          this.mode = inObject ? KEY : VALUE;
          return true;
        }
        return b === (inObject ? 0x7d : 0x5d) && this.close();
      }
    }
  }

  private startKey(b: number): boolean {
    if (b !== 0x22) return false;
    this.mode = STRING;
    this.key = true;
    return true;
  }

  private startValue(b: number): boolean {
    if (b === 0x7b || b === 0x5b) {
      if (this.depth === MAX_JSON_DEPTH) return false;
      const bit = 1 << this.depth;
      this.objects = b === 0x7b ? this.objects | bit : this.objects & ~bit;
      this.depth++;
      this.mode = b === 0x7b ? OBJECT_FIRST : ARRAY_FIRST;
      return true;
    }
    if (b === 0x22) {
      this.mode = STRING;
      this.key = false;
      return true;
    }
    if (b === 0x2d || isDigit(b)) {
      this.mode = NUMBER;
      this.num = b === 0x2d ? N_MINUS : b === 0x30 ? N_ZERO : N_INT;
      return true;
    }
    const literal = b === 0x74 ? 0 : b === 0x66 ? 1 : b === 0x6e ? 2 : -1;
    if (literal < 0) return false;
    this.mode = LITERAL;
    this.literal = literal;
    this.at = 1;
    return true;
  }

  private close(): boolean {
    this.depth--;
    this.endValue();
    return true;
  }

  private endValue(): void {
    this.mode = this.depth === 0 ? DONE : AFTER;
  }

  private inString(b: number): boolean {
    if (this.utf8 > 0) {
      if (b < this.lo || b > this.hi) return false;
      this.utf8--;
      this.lo = 0x80;
      this.hi = 0xbf;
      return true;
    }
    if (this.escape) {
      this.escape = false;
      if (b === 0x75) this.hex = 4;
      return b === 0x75 || isEscape(b);
    }
    if (this.hex > 0) {
      this.hex--;
      return isHex(b);
    }
    if (b === 0x22) {
      if (this.key) this.mode = COLON;
      else this.endValue();
      return true;
    }
    if (b === 0x5c) {
      this.escape = true;
      return true;
    }
    if (b < 0x20) return false; // control characters must be escaped
    if (b < 0x80) return true;
    // A UTF-8 lead byte: how many continuation bytes, and the first one's range.
    if (b >= 0xc2 && b <= 0xdf) this.utf8 = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      this.utf8 = 2;
      if (b === 0xe0) this.lo = 0xa0; // overlong
      if (b === 0xed) this.hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      this.utf8 = 3;
      if (b === 0xf0) this.lo = 0x90; // overlong
      if (b === 0xf4) this.hi = 0x8f; // past U+10FFFF
    } else return false;
    return true;
  }

  private inNumber(b: number): boolean {
    const n = this.num;
    if (isDigit(b)) {
      if (n === N_ZERO) return false;
      this.num = n === N_MINUS ? (b === 0x30 ? N_ZERO : N_INT) : n === N_DOT ? N_FRAC : n === N_E || n === N_ESIGN ? N_EXP : n;
      return true;
    }
    if (b === 0x2e && (n === N_ZERO || n === N_INT)) {
      this.num = N_DOT;
      return true;
    }
    if ((b === 0x65 || b === 0x45) && (n === N_ZERO || n === N_INT || n === N_FRAC)) {
      this.num = N_E;
      return true;
    }
    if ((b === 0x2b || b === 0x2d) && n === N_E) {
      this.num = N_ESIGN;
      return true;
    }
    if (!numberMayEnd(n)) return false;
    // The byte ends the number and belongs to what follows it.
    this.endValue();
    return this.pushByte(b);
  }
}
