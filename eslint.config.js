// ESLint (flat config): @eslint/js recommended + typescript-eslint recommended (syntactic only, no
// type information, so it stays fast). AssemblyScript (assembly/) is not TypeScript to ESLint.
import js from "@eslint/js";
import tseslint from "typescript-eslint";
import globals from "globals";

export default tseslint.config(
  {
    ignores: [
      "assembly/**",
      "dist/**",
      "build/**",
      "docs/**",
      "coverage/**",
      "node_modules/**",
      "**/node_modules/**",
      "test/fixtures/**",
      "**/out/**", // generated bundles (examples/*/out, demo/out, test/demo/out, bench/out)
      ".cache/**",
      ".scratch/**",
    ],
  },
  {
    files: ["**/*.{js,mjs,cjs,ts,mts,cts}"],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: "module",
      globals: { ...globals.node, ...globals.browser, ...globals.worker },
    },
    rules: {
      // A leading underscore marks a deliberately unused binding (`for await (const _ of …)`, `_state`).
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_" },
      ],
      // `let [k, buf] = …` where only buf is reassigned, and `let pool` read by a callback before it is assigned, are intended.
      "prefer-const": ["error", { destructuring: "all", ignoreReadBeforeAssign: true }],
    },
  },
);
