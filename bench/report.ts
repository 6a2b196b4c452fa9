// Output: markdown-style tables (default) or one JSON object per line per (case, build).
import type { Build } from "../src/wasm.js";
import type { Check } from "./data.js";
import type { Timing } from "./measure.js";
import { type CaseResult, rate } from "./runner.js";

const sig = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x >= 1 ? x.toFixed(2) : x.toPrecision(2));
const sci = (x: number) => (x === 0 ? "0" : Number.isNaN(x) ? "NaN" : x.toExponential(1));
const rateKey = (r: CaseResult) => (r.unit === "GFLOP/s" ? "gflops" : "gbps");

function table(header: string[], rows: string[][], rightFrom = 2): string {
  const w = header.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const line = (cells: string[]) => "| " + cells.map((c, j) => (j >= rightFrom ? c.padStart(w[j]) : c.padEnd(w[j]))).join(" | ") + " |";
  const rule = "|" + w.map((n, j) => (j >= rightFrom ? "-".repeat(n + 1) + ":" : "-".repeat(n + 2))).join("|") + "|";
  return [line(header), rule, ...rows.map(line)].join("\n");
}

function ratio(r: CaseResult, t: Timing | null): number | null {
  return t && r.bestPeer?.timing ? r.bestPeer.timing.ms / t.ms : null;
}

function oursCell(r: CaseResult, b: Build): string {
  const o = r.ours.find((x) => x.build === b);
  if (!o) return "-";
  if (o.status !== "ok" || !o.timing) return o.status;
  return sig(rate(r.work, o.timing.ms));
}

/** Throughput (medians) and ratios ours/peer: > 1 means we are faster. */
export function summaryTable(results: CaseResult[], builds: Build[]): string {
  const header = ["kernel", "shape", "unit", "ORT variant", ...builds, "ORT", ...builds.map((b) => `${b}/ORT`)];
  const rows = results.map((r) => {
    const peer = r.bestPeer?.timing;
    return [
      r.kernel,
      r.shape,
      r.unit,
      r.bestPeer?.variant ?? "-",
      ...builds.map((b) => oursCell(r, b)),
      peer ? sig(rate(r.work, peer.ms)) : "-",
      ...builds.map((b) => {
        const q = ratio(r, r.ours.find((o) => o.build === b)?.timing ?? null);
        return q === null ? "-" : `${q.toFixed(2)}x`;
      }),
    ];
  });
  return table(header, rows, 4);
}

/** Every contender of every case: ms median and min, samples, and the correctness checks. */
export function detailTable(results: CaseResult[]): string {
  const header = ["kernel", "shape", "contender", "ms median", "ms min", "samples×calls", "rate", "max Δ vs ORT", "max Δ vs f64"];
  const check = (c: Check | undefined) => (c ? `${sci(c.maxAbs)}${c.ok ? "" : " FAIL"}` : "-");
  const rows: string[][] = [];
  for (const r of results) {
    for (const o of r.ours) {
      const t = o.timing;
      rows.push([
        r.kernel,
        r.shape,
        o.build,
        t ? sig(t.ms) : o.status,
        t ? sig(t.msMin) : "-",
        t ? `${t.samples}×${t.batch}` : "-",
        t ? sig(rate(r.work, t.ms)) : "-",
        check(o.vsPeer),
        check(o.vsRef),
      ]);
    }
    for (const p of r.peers) {
      const t = p.timing;
      rows.push([
        r.kernel,
        r.shape,
        `ORT ${p.variant}${p === r.bestPeer ? " *" : ""}`,
        t ? sig(t.ms) : "-",
        t ? sig(t.msMin) : "-",
        t ? `${t.samples}×${t.batch}` : "-",
        t ? sig(rate(r.work, t.ms)) : "-",
        "",
        check(p.vsRef),
      ]);
    }
  }
  return table(header, rows, 3);
}

const checkJson = (c: Check | undefined) => c && { max_abs_diff: c.maxAbs, ok: c.ok, worst_index: c.at, got: c.got, want: c.want };

/** One JSON object per (case, build). */
export function jsonLines(r: CaseResult, peerName: string): string[] {
  const key = rateKey(r);
  const peer = r.bestPeer?.timing;
  return r.ours.map((o) =>
    JSON.stringify({
      kernel: r.kernel,
      shape: r.shape,
      build: o.build,
      threads: 1,
      status: o.status,
      ...(o.note ? { note: o.note } : {}),
      ms: o.timing?.ms ?? null,
      ms_min: o.timing?.msMin ?? null,
      samples: o.timing?.samples ?? null,
      calls_per_sample: o.timing?.batch ?? null,
      [key]: o.timing ? rate(r.work, o.timing.ms) : null,
      unit: r.unit,
      peer: peerName,
      peer_variant: r.bestPeer?.variant ?? null,
      peer_ms: peer?.ms ?? null,
      peer_ms_min: peer?.msMin ?? null,
      [`peer_${key}`]: peer ? rate(r.work, peer.ms) : null,
      ratio: ratio(r, o.timing),
      max_abs_diff: o.vsPeer?.maxAbs ?? null,
      ref_max_abs_diff: o.vsRef?.maxAbs ?? null,
      peer_ref_max_abs_diff: r.bestPeer?.vsRef.maxAbs ?? null,
      check_vs_peer: checkJson(o.vsPeer),
      check_vs_ref: checkJson(o.vsRef),
      tol: r.tol,
      peer_variants: r.peers.map((p) => ({
        variant: p.variant,
        ms: p.timing?.ms ?? null,
        ms_min: p.timing?.msMin ?? null,
        [key]: p.timing ? rate(r.work, p.timing.ms) : null,
        ref_max_abs_diff: p.vsRef.maxAbs,
        ok: p.vsRef.ok,
      })),
      dims: r.dims,
      work: r.work,
      work_note: r.workNote,
    }),
  );
}

/** One line per case while the bench runs (stderr). */
export function progressLine(r: CaseResult): string {
  const parts = [
    ...r.ours.map((o) => (o.timing ? `${o.build} ${sig(rate(r.work, o.timing.ms))}` : `${o.build} ${o.status}`)),
    ...r.peers.map((p) => `ORT ${p.variant} ${p.timing ? sig(rate(r.work, p.timing.ms)) : p.vsRef.ok ? "-" : "WRONG"}`),
  ];
  const diffs = r.ours.filter((o) => o.vsPeer).map((o) => `${o.build} ${sci(o.vsPeer!.maxAbs)}`);
  return `${r.kernel} ${r.shape}: ${parts.join(", ")} ${r.unit}` + (diffs.length ? `; max|Δ| vs ORT ${diffs.join(", ")}` : "");
}
