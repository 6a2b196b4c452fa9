// A plain float64 OPT forward pass written from transformers' modeling_opt.py, line by line, for
// checking configurations the fixture does not cover (post-LN, project_in/out, activations,
// no biases, no LayerNorm affine, untied lm_head). Slow and obvious on purpose.
import type { TensorSource } from "../src/formats/types.js";
import { optDims, type OptConfig } from "../src/models/families/index.js";

type Mat = Float64Array;

export function referenceForward(config: OptConfig, src: TensorSource, ids: number[], mask = ids.map(() => 1)): Float64Array {
  const d = optDims(config);
  const get = (name: string): Mat | null => {
    const info = src.get(name);
    if (!info) return null;
    const f = new Float32Array(info.shape.reduce((a, b) => a * b, 1));
    src.readF32(name, f);
    return Float64Array.from(f);
  };
  const p = "model.decoder.";
  const T = ids.length;
  const linear = (x: Mat, rows: number, K: number, w: Mat, b: Mat | null, N: number): Mat => {
    const y = new Float64Array(rows * N);
    for (let t = 0; t < rows; t++)
      for (let o = 0; o < N; o++) {
        let s = b ? b[o] : 0;
        for (let k = 0; k < K; k++) s += x[t * K + k] * w[o * K + k];
        y[t * N + o] = s;
      }
    return y;
  };
  const layerNorm = (x: Mat, C: number, w: Mat | null, b: Mat | null): Mat => {
    const y = new Float64Array(x.length);
    for (let t = 0; t < x.length / C; t++) {
      let m = 0;
      for (let c = 0; c < C; c++) m += x[t * C + c];
      m /= C;
      let v = 0;
      for (let c = 0; c < C; c++) v += (x[t * C + c] - m) ** 2;
      v /= C;
      const r = 1 / Math.sqrt(v + 1e-5);
      for (let c = 0; c < C; c++) y[t * C + c] = (x[t * C + c] - m) * r * (w ? w[c] : 1) + (b ? b[c] : 0);
    }
    return y;
  };
  const erf = (x: number) => {
    // Numerical Recipes' erfc (Chebyshev fit): |error| < 1.2e-7, plenty for a logits reference.
    const t = 1 / (1 + 0.5 * Math.abs(x));
    const y =
      1 -
      t *
        Math.exp(
          -x * x -
            1.26551223 +
            t *
              (1.00002368 +
                t *
                  (0.37409196 +
                    t *
                      (0.09678418 +
                        t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
        );
    return x >= 0 ? y : -y;
  };
  const act = (v: number) => {
    switch (d.activation) {
      case "relu":
        return Math.max(0, v);
      case "gelu":
        return 0.5 * v * (1 + erf(v / Math.SQRT2));
      case "gelu_tanh":
        return 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));
      case "silu":
        return v / (1 + Math.exp(-v));
    }
  };
  const { C, E, H, D, F, V } = d;
  // embeddings
  const emb = get(p + "embed_tokens.weight")!;
  let x = new Float64Array(T * E);
  ids.forEach((id, t) => x.set(emb.subarray(id * E, (id + 1) * E), t * E));
  if (d.project) x = linear(x, T, E, get(p + "project_in.weight")!, null, C);
  const pos = get(p + "embed_positions.weight")!;
  let seen = 0;
  for (let t = 0; t < T; t++) {
    const position = mask[t] ? seen++ : -1;
    for (let c = 0; c < C; c++) x[t * C + c] += pos[(position + 2) * C + c];
  }
  for (let i = 0; i < d.L; i++) {
    const l = `${p}layers.${i}.`;
    const g = (n: string) => get(l + n);
    // self-attention
    let h = d.preNorm ? layerNorm(x, C, g("self_attn_layer_norm.weight"), g("self_attn_layer_norm.bias")) : x;
    const q = linear(h, T, C, g("self_attn.q_proj.weight")!, g("self_attn.q_proj.bias"), C).map((v) => v / Math.sqrt(D));
    const k = linear(h, T, C, g("self_attn.k_proj.weight")!, g("self_attn.k_proj.bias"), C);
    const v = linear(h, T, C, g("self_attn.v_proj.weight")!, g("self_attn.v_proj.bias"), C);
    const att = new Float64Array(T * C);
    for (let hh = 0; hh < H; hh++)
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let j = 0; j <= t; j++) {
          if (!mask[j]) continue;
          let s = 0;
          for (let e = 0; e < D; e++) s += q[t * C + hh * D + e] * k[j * C + hh * D + e];
          scores.push(s);
        }
        const js = Array.from({ length: t + 1 }, (_, j) => j).filter((j) => mask[j]);
        const m = Math.max(...scores);
        const ex = scores.map((s) => Math.exp(s - m));
        const z = ex.reduce((a, b) => a + b, 0);
        js.forEach((j, n) => {
          for (let e = 0; e < D; e++) att[t * C + hh * D + e] += (ex[n] / z) * v[j * C + hh * D + e];
        });
      }
    h = linear(att, T, C, g("self_attn.out_proj.weight")!, g("self_attn.out_proj.bias"), C);
    x = x.map((xv, n) => xv + h[n]);
    if (!d.preNorm) x = layerNorm(x, C, g("self_attn_layer_norm.weight"), g("self_attn_layer_norm.bias"));
    // feed-forward
    h = d.preNorm ? layerNorm(x, C, g("final_layer_norm.weight"), g("final_layer_norm.bias")) : x;
    h = linear(h, T, C, g("fc1.weight")!, g("fc1.bias"), F).map(act);
    h = linear(h, T, F, g("fc2.weight")!, g("fc2.bias"), C);
    x = x.map((xv, n) => xv + h[n]);
    if (!d.preNorm) x = layerNorm(x, C, g("final_layer_norm.weight"), g("final_layer_norm.bias"));
  }
  if (d.finalNorm) x = layerNorm(x, C, get(p + "final_layer_norm.weight"), get(p + "final_layer_norm.bias"));
  if (d.project) x = linear(x, T, C, get(p + "project_out.weight")!, null, E);
  const head = d.tied ? emb : get("lm_head.weight")!;
  return linear(x, T, E, head, null, V);
}
