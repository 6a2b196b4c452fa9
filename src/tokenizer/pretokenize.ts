// Splitting text before BPE: first around literal added/special tokens, then with GPT-2's regex.

/**
 * GPT-2's pattern. The reference runs it with Python's `regex` module, whose \s is exactly
 * \p{White_Space}; JavaScript's \s differs (it adds U+FEFF and lacks U+0085), so the
 * whitespace classes are spelled out as \p{White_Space}.
 */
const GPT2_PATTERN =
  /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+/gu;

export function preTokenize(text: string): string[] {
  return text.match(GPT2_PATTERN) ?? [];
}

// Python's str.isspace() set, used by str.strip() in the reference's lstrip/rstrip handling.
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const LEADING_SPACE = new RegExp(`^[${PY_SPACE}]+`);
const TRAILING_SPACE = new RegExp(`[${PY_SPACE}]+$`);

/** Lone surrogates cannot be UTF-8 encoded; they become U+FFFD (see Tokenizer.encode). */
export function replaceLoneSurrogates(text: string): string {
  return text.replace(/[\uD800-\uDFFF]/gu, "\uFFFD");
}

export interface MatchableToken {
  content: string;
  id: number;
  lstrip: boolean;
  rstrip: boolean;
  singleWord: boolean;
}

/** A piece of input: plain text for BPE, or one literal added token. */
export interface Chunk {
  text: string;
  token: MatchableToken | null;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/**
 * Finds added tokens in text, leftmost first and longest among those starting at the same
 * place (what transformers' Trie.split does), then applies the slow tokenizer's
 * lstrip / rstrip / single_word rules to the neighbouring text.
 */
export class AddedTokenSplitter {
  private readonly pattern: RegExp | null;
  private readonly byContent = new Map<string, MatchableToken>();

  constructor(tokens: Iterable<MatchableToken>) {
    for (const t of tokens) if (t.content !== "" && !this.byContent.has(t.content)) this.byContent.set(t.content, t);
    const contents = [...this.byContent.keys()].sort((a, b) => b.length - a.length);
    // Longest alternatives first: JS alternation takes the first that matches at a position.
    this.pattern = contents.length > 0 ? new RegExp(contents.map(escapeRegExp).join("|"), "g") : null;
  }

  split(text: string): Chunk[] {
    const pieces: string[] = [];
    if (this.pattern) {
      let last = 0;
      for (const m of text.matchAll(this.pattern)) {
        if (m.index > last) pieces.push(text.slice(last, m.index));
        pieces.push(m[0]);
        last = m.index + m[0].length;
      }
      if (last < text.length) pieces.push(text.slice(last));
    } else {
      pieces.push(text);
    }
    this.applyStripRules(pieces);
    // Like the reference, a piece is a token iff its (possibly rewritten) text is one.
    return pieces.filter((p) => p !== "").map((p) => ({ text: p, token: this.byContent.get(p) ?? null }));
  }

  // Mirrors the loop in transformers' PreTrainedTokenizer.tokenize() (v4.36), including its
  // single_word handling, which glues a token that touches a word back into plain text.
  private applyStripRules(pieces: string[]): void {
    for (let i = 0; i < pieces.length; i++) {
      const tok = this.byContent.get(pieces[i]);
      if (!tok) continue;
      const left = i > 0 ? pieces[i - 1] : "";
      const right = i + 1 < pieces.length ? pieces[i + 1] : "";
      if (tok.rstrip && right) pieces[i + 1] = right.replace(LEADING_SPACE, "");
      if (tok.lstrip && left) pieces[i - 1] = left.replace(TRAILING_SPACE, "");
      if (tok.singleWord && left && !left.endsWith(" ")) {
        pieces[i - 1] += pieces[i];
        pieces[i] = "";
      } else if (tok.singleWord && right && !right.startsWith(" ")) {
        pieces[i] += right;
        pieces[i + 1] = "";
      }
    }
  }
}
