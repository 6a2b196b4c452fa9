// One case: check every contender's output first (a benchmark of a wrong kernel is worthless),
// then time the ones that passed, interleaved, and pick the peer's fastest variant.
import type { Build } from "../src/wasm.js";
import type { CaseSpec, OursRun } from "./cases.js";
import { type Check, compare } from "./data.js";
import { type Contender, measure, type MeasureOptions, type Timing } from "./measure.js";

export interface OursResult {
  build: Build;
  /** Null when the kernel is missing or wrong. */
  timing: Timing | null;
  status: "ok" | "missing" | "wrong";
  note?: string;
  /** Max |ours - peer| over the whole output (first checked call), and vs the float64 reference. */
  vsPeer?: Check;
  vsRef?: Check;
}

export interface PeerResult {
  variant: string;
  timing: Timing | null;
  vsRef: Check;
}

/** A case as described (without its runs), and what its contenders did. */
export interface CaseResult extends Pick<CaseSpec, "kernel" | "shape" | "dims" | "unit" | "work" | "workNote" | "tol"> {
  ours: OursResult[];
  peers: PeerResult[];
  /** The peer variant with the lowest median (what ratios compare with). */
  bestPeer: PeerResult | null;
}

/** Throughput in the case's unit for a time in ms. */
export const rate = (work: number, ms: number) => work / (ms * 1e6);

const worse = (a: Check | undefined, b: Check): Check => (!a || !b.ok || (a.ok && b.maxAbs > a.maxAbs) ? b : a);

export async function runCase(spec: CaseSpec, opts: MeasureOptions): Promise<CaseResult> {
  // Peer outputs first: they are what ours are compared with, element by element.
  const peers: PeerResult[] = [];
  const peerOut = new Map<number, Float32Array>();
  for (const p of spec.peers) {
    let vsRef: Check | undefined;
    for (const i of spec.checkCalls) {
      const y = await p.run(i);
      vsRef = worse(vsRef, (p.reference ?? spec.reference)(i, y));
      // Ours are compared with a single-op peer output only (a chain's output is not one call's).
      if (!p.reference && !peerOut.has(i)) peerOut.set(i, y.slice());
    }
    peers.push({ variant: p.variant, timing: null, vsRef: vsRef! });
  }

  const ours: OursResult[] = [];
  for (const o of spec.ours) {
    if ("missing" in o) {
      ours.push({ build: o.build, timing: null, status: "missing", note: o.missing });
      continue;
    }
    let vsRef: Check | undefined;
    let vsPeer: Check | undefined;
    for (const i of spec.checkCalls) {
      o.run(i);
      const y = o.output();
      vsRef = worse(vsRef, spec.reference(i, y));
      const py = peerOut.get(i);
      if (py) vsPeer = worse(vsPeer, compare(y, py, spec.tol));
    }
    const ok = vsRef!.ok && (vsPeer?.ok ?? true);
    ours.push({ build: o.build, timing: null, status: ok ? "ok" : "wrong", vsRef, vsPeer });
  }

  const contenders: Contender[] = [];
  const slots: { timing: Timing | null }[] = [];
  const perRun: number[] = [];
  spec.ours.forEach((o, j) => {
    if (ours[j].status !== "ok") return;
    contenders.push({ name: o.build, run: (o as OursRun).run });
    slots.push(ours[j]);
    perRun.push(1);
  });
  spec.peers.forEach((p, j) => {
    if (!peers[j].vsRef.ok) return;
    contenders.push({ name: p.variant, run: p.run });
    slots.push(peers[j]);
    perRun.push(p.opsPerRun);
  });
  if (contenders.length > 0) {
    const timings = await measure(contenders, opts);
    // Per kernel call: a run of an R-node graph made R calls.
    timings.forEach((t, j) => (slots[j].timing = { ...t, ms: t.ms / perRun[j], msMin: t.msMin / perRun[j] }));
  }
  const timed = peers.filter((p) => p.timing);
  const bestPeer = timed.length ? timed.reduce((a, b) => (b.timing!.ms < a.timing!.ms ? b : a)) : null;
  return {
    kernel: spec.kernel,
    shape: spec.shape,
    dims: spec.dims,
    unit: spec.unit,
    work: spec.work,
    workNote: spec.workNote,
    tol: spec.tol,
    ours,
    peers,
    bestPeer,
  };
}
