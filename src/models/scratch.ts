// One table gives a step's scratch both its size and its pointers (llm.c's way: sizes first, one
// reservation, buffers pointed into it), so the two can never disagree.
import { align, type Arena } from "../arena.js";

/** Buffer name → bytes (0: the buffer is absent this step). */
export type ScratchTable<K extends string> = Record<K, number>;

const ALIGN = 64;

/** Bytes to reserve for a table: every buffer 64-byte aligned, plus the first one's alignment. */
export function scratchBytes<K extends string>(table: ScratchTable<K>): number {
  let n = ALIGN;
  for (const k in table) n += align(table[k], ALIGN);
  return n;
}

/** Allocate every buffer of the table (reserved first with scratchBytes); absent ones get 0. */
export function placeScratch<K extends string>(arena: Arena, table: ScratchTable<K>): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k in table) out[k] = table[k] > 0 ? arena.alloc(table[k], ALIGN) : 0;
  return out;
}

/** Bytes of n f32 values. */
export const f32s = (n: number) => n * 4;
