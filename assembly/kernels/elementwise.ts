// Element-wise ops. y = f(x), n elements, y may alias x.
export function relu(y: usize, x: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    store<f32>(y + (<usize>i << 2), v > 0 ? v : 0);
  }
}
