// Looking inside the model one layer at a time, for people learning how a transformer works:
//   - the hidden state's norm per token after each layer (how much each layer writes),
//   - the logit lens: the next-token candidates read off each layer through the final norm and lm_head,
//   - per head, which earlier tokens the last token attends to most, or the whole attention pattern.
import type { DecoderModel } from "./models/decoder.js";
import type { TextCodec } from "./generate/index.js";

export interface Candidate {
  id: number;
  token: string;
  prob: number;
}
/**
 * Where a query head looks from the last position. `kvHead`: the key/value head it reads — its own
 * index for multi-head attention; with grouped-query attention (LLaMA, Qwen2) H / Hkv query heads
 * share each KV head, so heads of one group see the same keys and differ only in their queries.
 */
export interface HeadFocus {
  head: number;
  kvHead: number;
  positions: { pos: number; token: string; weight: number }[];
}
export interface LayerView {
  /** -1 for the embeddings, then 0 … L-1. */
  layer: number;
  /** L2 norm of the hidden state at each position. */
  norms: number[];
  /** Logit lens at the last position. */
  top: Candidate[];
  /** Logit lens at each position: null except at the last `lensPositions` ones. */
  lens: (Candidate[] | null)[];
  /** Most-attended positions of the last token, per head (absent for the embeddings). */
  heads?: HeadFocus[];
  /** With `attentions`: the layer's attention probabilities (H, T, T), row = query, column = key. */
  attention?: Float32Array;
}
export interface Inspection {
  ids: number[];
  tokens: string[];
  layers: LayerView[];
}

export interface InspectOptions {
  /** Candidates per logit-lens reading (default 5). */
  top?: number;
  /** Read the logit lens at the last this-many positions (default 1; each costs an lm_head pass per layer). */
  lensPositions?: number;
  /** Keep every layer's whole attention pattern as `attention` (default: only the last token's top positions). */
  attentions?: boolean;
}

/**
 * The k most likely of the first n entries of `logits` (ids the tokenizer can decode: OPT's lm_head
 * has 7 padding rows past its vocabulary), with their softmax probabilities over those n. One pass.
 */
function topK(logits: Float32Array, n: number, k: number, token: (id: number) => string): Candidate[] {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  const best: number[] = [];
  for (let i = 0; i < n; i++) {
    sum += Math.exp(logits[i] - max);
    if (best.length === k && logits[i] <= logits[best[k - 1]]) continue;
    let j = Math.min(best.length, k - 1);
    while (j > 0 && logits[best[j - 1]] < logits[i]) j--;
    best.splice(j, 0, i);
    if (best.length > k) best.pop();
  }
  return best.map((id) => ({ id, token: token(id), prob: Math.exp(logits[id] - max) / sum }));
}

/**
 * The prompt through the model one layer at a time, recording after the embeddings and after each
 * layer: every token's hidden-state norm, the logit lens, and the attention (see InspectOptions).
 */
export async function inspectPrompt(
  model: DecoderModel,
  codec: TextCodec,
  prompt: string | number[],
  o: InspectOptions = {},
): Promise<Inspection> {
  const ids = typeof prompt === "string" ? codec.encode(prompt) : Array.from(prompt);
  const { C, L, H, Hkv, V } = model.dims;
  const decodable = Math.min(V, codec.vocabSize ?? V);
  const token = (id: number) => (id < decodable ? codec.decode([id]) : `<${id}>`);
  const tokens = ids.map(token);
  const k = o.top ?? 5;
  const T = ids.length;
  const nLens = Math.max(1, Math.min(T, o.lensPositions ?? 1));
  const rows = Array.from({ length: nLens }, (_, j) => T - nLens + j);
  const s = model.begin([ids], { collectAttentions: true, maxLogitRows: nLens });
  try {
    const layers: LayerView[] = [];
    const view = async (layer: number) => {
      const x = model.hidden(s);
      const norms = Array.from({ length: T }, (_, t) => Math.hypot(...x.subarray(t * C, (t + 1) * C)));
      const logits = await model.logitsAsync(s, rows); // (rows, V)
      const lens: (Candidate[] | null)[] = new Array(T).fill(null);
      rows.forEach((t, j) => (lens[t] = topK(logits.subarray(j * V, (j + 1) * V), decodable, k, token)));
      const v: LayerView = { layer, norms, top: lens[T - 1]!, lens };
      if (layer >= 0) {
        const p = s.attentions[layer]; // (1, H, T, T)
        v.heads = Array.from({ length: H }, (_, h) => {
          const row = p.subarray((h * T + T - 1) * T, (h * T + T) * T); // the last query row
          const order = Array.from(row.keys())
            .sort((a, b) => row[b] - row[a])
            .slice(0, 3);
          return {
            head: h,
            kvHead: Math.floor(h / (H / Hkv)),
            positions: order.map((pos) => ({ pos, token: tokens[pos], weight: row[pos] })),
          };
        });
        if (o.attentions) v.attention = p;
      }
      layers.push(v);
    };
    await model.prepareEmbed(s);
    model.embed(s);
    await view(-1);
    for (let i = 0; i < L; i++) {
      await model.prepareLayer(i);
      model.layer(i, s);
      await view(i);
    }
    return { ids, tokens, layers };
  } finally {
    s.end();
  }
}

const show = (t: string) => JSON.stringify(t);

export function formatInspection(r: Inspection): string {
  const out: string[] = [`tokens: ${r.tokens.map(show).join(" ")}`, ""];
  for (const v of r.layers) {
    const name = v.layer < 0 ? "embeddings" : `layer ${v.layer}`;
    const meanNorm = v.norms.reduce((a, b) => a + b, 0) / v.norms.length;
    out.push(`${name.padEnd(10)} |h| mean ${meanNorm.toFixed(2)}, last ${v.norms[v.norms.length - 1].toFixed(2)}`);
    out.push(`  next-token (logit lens): ${v.top.map((c) => `${show(c.token)} ${(c.prob * 100).toFixed(1)}%`).join(", ")}`);
    for (const h of v.heads ?? []) {
      const kv = h.kvHead !== h.head || (v.heads ?? []).some((x) => x.kvHead !== x.head) ? ` (kv ${h.kvHead})` : "";
      out.push(
        `  head ${String(h.head).padStart(2)}${kv} attends to ${h.positions.map((p) => `${p.pos}:${show(p.token)} ${p.weight.toFixed(2)}`).join(", ")}`,
      );
    }
  }
  return out.join("\n") + "\n";
}
