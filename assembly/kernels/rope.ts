// Rotary position embedding, in place, in transformers' LLaMA form (rotate_half: the two halves of
// each head are the pair, not interleaved neighbours):
//   rope(x, cs, rows, H, D)
//       for row r, head h, i in [0, D/2), with a = x[r, h, i], b = x[r, h, i + D/2]:
//       x[r, h, i]       = a·cos[r, i] − b·sin[r, i]
//       x[r, h, i + D/2] = b·cos[r, i] + a·sin[r, i]
//       x: (rows, H·D) f32 row-major (the q or k projection; head h at columns h·D..(h+1)·D)
//       cs: (rows, D) f32, cs[r, 0:D/2] = cos and cs[r, D/2:D] = sin of row r's angles
//           (the caller computes the angles: position, inv_freq, any scaling)
//       D must be even (an odd D would leave each head's last element unrotated; not checked).
// Variants: SIMD128 (4 pairs per step, scalar tail when D/2 is not a multiple of 4) and `ropeScalar`.
// Both round the same products and sums in the same order (no fused multiply-add, even in the
// relaxed build), so they agree bitwise; the kernel is memory-bound and an FMA buys nothing here.

export function rope(x: usize, cs: usize, rows: i32, H: i32, D: i32): void {
  const half = D >> 1;
  const halfBytes = <usize>half << 2;
  const hv = <usize>(half & ~3) << 2;
  const headBytes = <usize>D << 2;
  for (let r = 0; r < rows; r++) {
    const c = cs + <usize>r * headBytes;
    const s = c + halfBytes;
    const row = x + <usize>r * <usize>H * headBytes;
    for (let h = 0; h < H; h++) {
      const lo = row + <usize>h * headBytes;
      const hi = lo + halfBytes;
      for (let i: usize = 0; i < hv; i += 16) {
        const a = v128.load(lo + i), b = v128.load(hi + i);
        const cv = v128.load(c + i), sv = v128.load(s + i);
        v128.store(lo + i, f32x4.sub(f32x4.mul(a, cv), f32x4.mul(b, sv)));
        v128.store(hi + i, f32x4.add(f32x4.mul(b, cv), f32x4.mul(a, sv)));
      }
      for (let i = hv; i < halfBytes; i += 4) {
        const a = load<f32>(lo + i), b = load<f32>(hi + i);
        const ci = load<f32>(c + i), si = load<f32>(s + i);
        store<f32>(lo + i, a * ci - b * si);
        store<f32>(hi + i, b * ci + a * si);
      }
    }
  }
}

export function ropeScalar(x: usize, cs: usize, rows: i32, H: i32, D: i32): void {
  const half = D >> 1;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < H; h++) {
      const head = (<usize>r * <usize>H + <usize>h) * <usize>D;
      for (let i = 0; i < half; i++) {
        const pa = x + ((head + <usize>i) << 2);
        const pb = x + ((head + <usize>(i + half)) << 2);
        const a = load<f32>(pa), b = load<f32>(pb);
        const ci = load<f32>(cs + ((<usize>r * <usize>D + <usize>i) << 2));
        const si = load<f32>(cs + ((<usize>r * <usize>D + <usize>(i + half)) << 2));
        store<f32>(pa, a * ci - b * si);
        store<f32>(pb, b * ci + a * si);
      }
    }
  }
}
