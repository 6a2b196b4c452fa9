// The Chromium flags every browser check launches with (test/browser, test/examples, test/demo):
// headless in a container, no GPU, and nothing that reaches the network on its own.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
