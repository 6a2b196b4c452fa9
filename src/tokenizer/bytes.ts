// GPT-2's byte-level alphabet: every byte 0..255 gets a printable character so that BPE
// symbols (and vocab.json keys) are plain strings without whitespace or control characters.
// This is `bytes_to_unicode()` from OpenAI's encoder.py / transformers' tokenization_gpt2.py.

function buildByteToChar(): string[] {
  const table: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  // Printable bytes stand for themselves; the rest are shifted past U+00FF in byte order.
  let shifted = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  }
  return table;
}

/** BYTE_TO_CHAR[b] is the one-character symbol for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** Inverse of BYTE_TO_CHAR, keyed by UTF-16 code unit (all 256 characters are in the BMP). */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = new Map(BYTE_TO_CHAR.map((ch, b) => [ch.charCodeAt(0), b] as const));

const encoder = new TextEncoder();
// ignoreBOM keeps a leading U+FEFF, as Python's bytes.decode("utf-8") does.
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** UTF-8 bytes of a string; lone surrogates become U+FFFD (EF BF BD). */
export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decode UTF-8 with errors="replace" semantics (one U+FFFD per maximal invalid subpart). */
export function utf8Decode(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}

/**
 * Bytes that a vocab token string stands for. Characters outside the byte alphabet (only in
 * hand-made vocabularies) fall back to their own UTF-8 rather than failing the whole decode.
 */
export function tokenToBytes(token: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token.charCodeAt(i));
    if (b !== undefined) {
      out.push(b);
    } else {
      const cp = token.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      for (const x of encoder.encode(ch)) out.push(x);
      i += ch.length - 1;
    }
  }
  return Uint8Array.from(out);
}
