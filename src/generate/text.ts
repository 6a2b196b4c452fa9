// Text of a generation as it streams: only text that can no longer change is released.
//
// generate and the server both use it, so the server's text at temperature 0 is exactly
// generate's. Each push decodes every id so far — tokenizers' clean-up and merges apply to the
// whole text — at O(n) per token; an incremental DecodeStream would not apply
// clean_up_tokenization_spaces.

export type Decode = (ids: number[]) => string;

export class TextStream {
  private readonly ids: number[] = [];
  private emitted = 0;
  /** Everything decoded so far, up to (excluding) the first stop string. */
  text = "";
  stopped = false;

  constructor(
    private readonly decode: Decode,
    private readonly stops: readonly string[] = [],
  ) {}

  /** The text that became final with this id ("" while a UTF-8 character or a possible stop string is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const full = this.decode(this.ids);
    // A half UTF-8 character decodes to U+FFFD until its last byte arrives.
    let end = full.endsWith("\uFFFD") ? full.length - 1 : full.length;
    const hits = this.stops.map((s) => full.indexOf(s)).filter((i) => i >= 0);
    if (hits.length) {
      this.stopped = true;
      end = Math.min(...hits);
      this.text = full.slice(0, end);
    } else {
      this.text = full;
      // Hold back a tail that may be the start of a stop string.
      let hold = 0;
      for (const s of this.stops) {
        for (let k = Math.min(s.length - 1, end); k > hold; k--) {
          if (full.slice(end - k, end) === s.slice(0, k)) {
            hold = k;
            break;
          }
        }
      }
      end -= hold;
    }
    if (end <= this.emitted) return "";
    const piece = full.slice(this.emitted, end);
    this.emitted = end;
    return piece;
  }

  /** At the end: whatever was held back. */
  flush(): string {
    const piece = this.text.slice(this.emitted);
    this.emitted = this.text.length;
    return piece;
  }

  /** Characters released so far (the offset of the next piece). */
  get offset(): number {
    return this.emitted;
  }
}
