// A restricted pickle reader, written by hand on purpose.
//
// A pickle is a program for a stack machine whose GLOBAL + REDUCE opcodes call arbitrary
// Python functions (`os.system`, `builtins.eval`, ...). There is no JS library that reads
// pickles safely — general ones rebuild whatever objects the stream names — so this reader
// implements only the opcodes torch.save emits for a state dict, resolves every global
// through the caller's allow-list (`Hooks.global`) and never calls anything the caller did
// not provide. It never executes code from the file. It is iterative (no recursion), every
// opcode consumes at least one byte and every length is checked against the buffer, so a
// hostile stream ends in a CheckpointError in time linear in its size.

import { fail } from "./types.js";

/** A Python tuple (kept apart from lists, which are plain arrays). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A module-level name that the caller's allow-list accepted. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

export interface Hooks {
  /** Resolve `module.name`; throw (via `fail`) for anything not allowed. */
  global(module: string, name: string): unknown;
  /** BINPERSID: resolve a persistent id (torch: a storage reference). */
  persistentLoad(pid: unknown): unknown;
  /** REDUCE: `callable(*args)`; `callable` is whatever `global` returned. */
  reduce(callable: unknown, args: unknown[]): unknown;
  /** BUILD: apply `state` to `obj` (torch: ignored on an OrderedDict); returns the object. */
  build(obj: unknown, state: unknown): unknown;
}

// Opcode names, for messages; the ones with a handler below are the supported set.
const NAMES: Record<number, string> = {
  0x28: "MARK",
  0x2e: "STOP",
  0x30: "POP",
  0x31: "POP_MARK",
  0x32: "DUP",
  0x46: "FLOAT",
  0x49: "INT",
  0x4a: "BININT",
  0x4b: "BININT1",
  0x4c: "LONG",
  0x4d: "BININT2",
  0x4e: "NONE",
  0x50: "PERSID",
  0x51: "BINPERSID",
  0x52: "REDUCE",
  0x53: "STRING",
  0x54: "BINSTRING",
  0x55: "SHORT_BINSTRING",
  0x56: "UNICODE",
  0x58: "BINUNICODE",
  0x61: "APPEND",
  0x62: "BUILD",
  0x63: "GLOBAL",
  0x64: "DICT",
  0x7d: "EMPTY_DICT",
  0x65: "APPENDS",
  0x67: "GET",
  0x68: "BINGET",
  0x69: "INST",
  0x6a: "LONG_BINGET",
  0x6c: "LIST",
  0x5d: "EMPTY_LIST",
  0x6f: "OBJ",
  0x70: "PUT",
  0x71: "BINPUT",
  0x72: "LONG_BINPUT",
  0x73: "SETITEM",
  0x74: "TUPLE",
  0x29: "EMPTY_TUPLE",
  0x75: "SETITEMS",
  0x47: "BINFLOAT",
  0x80: "PROTO",
  0x81: "NEWOBJ",
  0x82: "EXT1",
  0x83: "EXT2",
  0x84: "EXT4",
  0x85: "TUPLE1",
  0x86: "TUPLE2",
  0x87: "TUPLE3",
  0x88: "NEWTRUE",
  0x89: "NEWFALSE",
  0x8a: "LONG1",
  0x8b: "LONG4",
  0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES",
  0x8c: "SHORT_BINUNICODE",
  0x8d: "BINUNICODE8",
  0x8e: "BINBYTES8",
  0x8f: "EMPTY_SET",
  0x90: "ADDITEMS",
  0x91: "FROZENSET",
  0x92: "NEWOBJ_EX",
  0x93: "STACK_GLOBAL",
  0x94: "MEMOIZE",
  0x95: "FRAME",
  0x96: "BYTEARRAY8",
  0x97: "NEXT_BUFFER",
  0x98: "READONLY_BUFFER",
};

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Runs the pickle in `data` with the given hooks and returns the value STOP leaves on top. */
export function unpickle(data: Uint8Array, label: string, hooks: Hooks): unknown {
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let pos = 0;
  let op = 0;
  let opAt = 0;

  const where = (): string => `${NAMES[op] ?? "opcode"} at offset ${opAt}`;
  const need = (n: number): number => {
    if (n > data.length - pos) fail(label, `pickle truncated (${where()} needs ${n} more bytes)`);
    const p = pos;
    pos += n;
    return p;
  };
  const floor = (): number => (marks.length ? marks[marks.length - 1] : 0);
  const pop = (): unknown => {
    if (stack.length <= floor()) fail(label, `pickle stack underflow (${where()})`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length <= floor()) fail(label, `pickle stack underflow (${where()})`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail(label, `pickle has no MARK (${where()})`);
    return stack.splice(m);
  };
  const str = (n: number): string => {
    const p = need(n);
    try {
      return utf8.decode(data.subarray(p, p + n));
    } catch {
      fail(label, `pickle string is not valid UTF-8 (${where()})`);
    }
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail(label, `pickle truncated (${where()}: no end of line)`);
    const s = str(nl - pos);
    pos = nl + 1;
    return s;
  };
  const memoGet = (i: number): unknown => {
    if (!memo.has(i)) fail(label, `pickle memo ${i} is not set (${where()})`);
    return memo.get(i);
  };
  const setItems = (items: unknown[]): void => {
    const d = top();
    if (!(d instanceof Map)) fail(label, `pickle SETITEM(S) on a non-dict (${where()})`);
    if (items.length % 2) fail(label, `pickle SETITEMS with an odd item count (${where()})`);
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  };
  const appendItems = (items: unknown[]): void => {
    const l = top();
    if (!Array.isArray(l)) fail(label, `pickle APPEND(S) on a non-list (${where()})`);
    for (const x of items) l.push(x);
  };

  for (;;) {
    if (pos >= data.length) fail(label, `pickle truncated at offset ${pos} (no STOP)`);
    opAt = pos;
    op = data[pos++];
    switch (op) {
      case 0x80: {
        // PROTO
        const v = data[need(1)];
        if (v > 5) fail(label, `unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95:
        need(8);
        break; // FRAME: a read-ahead hint only; the data is inline
      case 0x2e: {
        // STOP
        if (stack.length === 0) fail(label, "pickle STOP with an empty stack");
        return stack[stack.length - 1];
      }
      case 0x28:
        marks.push(stack.length);
        break; // MARK
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x4e:
        stack.push(null);
        break; // NONE
      case 0x88:
        stack.push(true);
        break; // NEWTRUE
      case 0x89:
        stack.push(false);
        break; // NEWFALSE
      case 0x4b:
        stack.push(data[need(1)]);
        break; // BININT1
      case 0x4d:
        stack.push(dv.getUint16(need(2), true));
        break; // BININT2
      case 0x4a:
        stack.push(dv.getInt32(need(4), true));
        break; // BININT
      case 0x8a: {
        // LONG1: little-endian two's complement of n bytes
        const n = data[need(1)];
        const p = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[p + i]);
        if (n > 0 && data[p + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          fail(label, `pickle integer too large (${where()})`);
        }
        stack.push(Number(v));
        break;
      }
      case 0x47:
        stack.push(dv.getFloat64(need(8), false));
        break; // BINFLOAT (big-endian)
      case 0x58:
        stack.push(str(dv.getUint32(need(4), true)));
        break; // BINUNICODE
      case 0x8c:
        stack.push(str(data[need(1)]));
        break; // SHORT_BINUNICODE
      case 0x8d: {
        // BINUNICODE8
        const p = need(8);
        const n = dv.getUint32(p, true) + dv.getUint32(p + 4, true) * 2 ** 32;
        stack.push(str(n));
        break;
      }
      case 0x29:
        stack.push(new PyTuple([]));
        break; // EMPTY_TUPLE
      case 0x85:
        stack.push(new PyTuple([pop()]));
        break; // TUPLE1
      case 0x86: {
        const b = pop(),
          a = pop();
        stack.push(new PyTuple([a, b]));
        break;
      } // TUPLE2
      case 0x87: {
        // TUPLE3
        const c = pop(),
          b = pop(),
          a = pop();
        stack.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x74:
        stack.push(new PyTuple(popMark()));
        break; // TUPLE
      case 0x5d:
        stack.push([]);
        break; // EMPTY_LIST
      case 0x61: {
        const x = pop();
        appendItems([x]);
        break;
      } // APPEND
      case 0x65:
        appendItems(popMark());
        break; // APPENDS
      case 0x7d:
        stack.push(new Map());
        break; // EMPTY_DICT
      case 0x73: {
        const v = pop(),
          k = pop();
        setItems([k, v]);
        break;
      } // SETITEM
      case 0x75:
        setItems(popMark());
        break; // SETITEMS
      case 0x71:
        memo.set(data[need(1)], top());
        break; // BINPUT
      case 0x72:
        memo.set(dv.getUint32(need(4), true), top());
        break; // LONG_BINPUT
      case 0x94:
        memo.set(memo.size, top());
        break; // MEMOIZE
      case 0x68:
        stack.push(memoGet(data[need(1)]));
        break; // BINGET
      case 0x6a:
        stack.push(memoGet(dv.getUint32(need(4), true)));
        break; // LONG_BINGET
      case 0x63: {
        // GLOBAL: "module\nname\n"
        const module = line();
        const name = line();
        stack.push(hooks.global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop(),
          module = pop();
        if (typeof module !== "string" || typeof name !== "string") {
          fail(label, `pickle STACK_GLOBAL with non-string names (${where()})`);
        }
        stack.push(hooks.global(module, name));
        break;
      }
      case 0x51:
        stack.push(hooks.persistentLoad(pop()));
        break; // BINPERSID
      case 0x52: {
        // REDUCE
        const args = pop(),
          callable = pop();
        if (!(args instanceof PyTuple)) fail(label, `pickle REDUCE arguments are not a tuple (${where()})`);
        stack.push(hooks.reduce(callable, args.items));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop(),
          obj = pop();
        stack.push(hooks.build(obj, state));
        break;
      }
      default: {
        const hex = "0x" + op.toString(16).padStart(2, "0");
        if (NAMES[op]) fail(label, `unsupported pickle opcode ${NAMES[op]} (${hex}) at offset ${opAt}`);
        fail(label, `unknown pickle opcode ${hex} at offset ${opAt}`);
      }
    }
  }
}
