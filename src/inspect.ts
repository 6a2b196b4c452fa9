// Looking inside the model one layer at a time, for people learning how a transformer works:
//   - the hidden state's norm per token after each layer (how much each layer writes),
//   - the logit lens: the next-token candidates read off each layer through the final norm and lm_head,
//   - per head, which earlier tokens the last token attends to most.
import type { OptModel } from "./models/opt/model.js";
import type { TextCodec } from "./generate/index.js";

export interface Candidate { id: number; token: string; prob: number }
export interface HeadFocus { head: number; positions: { pos: number; token: string; weight: number }[] }
export interface LayerView {
  /** -1 for the embeddings, then 0 … L-1. */
  layer: number;
  /** L2 norm of the hidden state at each position. */
  norms: number[];
  /** Logit lens at the last position. */
  top: Candidate[];
  /** Most-attended positions of the last token, per head (absent for the embeddings). */
  heads?: HeadFocus[];
}
export interface Inspection { ids: number[]; tokens: string[]; layers: LayerView[] }

function topK(logits: Float32Array, k: number, codec: TextCodec): Candidate[] {
  let max = -Infinity;
  for (const v of logits) if (v > max) max = v;
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const idx = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a]).slice(0, k);
  return idx.map((id) => ({ id, token: codec.decode([id]), prob: Math.exp(logits[id] - max) / sum }));
}

export async function inspectPrompt(model: OptModel, codec: TextCodec, prompt: string | number[], o: { top?: number } = {}): Promise<Inspection> {
  const ids = typeof prompt === "string" ? codec.encode(prompt) : prompt;
  const tokens = ids.map((id) => codec.decode([id]));
  const k = o.top ?? 5;
  const { C, L, H } = model.d;
  const T = ids.length;
  const s = model.begin([ids], { collectAttentions: true, maxLogitRows: 1 });
  try {
    const layers: LayerView[] = [];
    const view = async (layer: number) => {
      const x = model.hidden(s);
      const norms = Array.from({ length: T }, (_, t) => Math.hypot(...x.subarray(t * C, (t + 1) * C)));
      const v: LayerView = { layer, norms, top: topK(await model.logitsAsync(s, [T - 1]), k, codec) };
      if (layer >= 0) {
        const p = s.attentions[layer]; // (1, H, T, T): the last query row of each head
        v.heads = Array.from({ length: H }, (_, h) => {
          const row = p.subarray((h * T + T - 1) * T, (h * T + T) * T);
          const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a]).slice(0, 3);
          return { head: h, positions: order.map((pos) => ({ pos, token: tokens[pos], weight: row[pos] })) };
        });
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
      out.push(`  head ${String(h.head).padStart(2)} attends to ${h.positions.map((p) => `${p.pos}:${show(p.token)} ${p.weight.toFixed(2)}`).join(", ")}`);
    }
  }
  return out.join("\n") + "\n";
}
