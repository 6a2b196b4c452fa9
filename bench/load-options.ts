// Which DecoderModel.load options exist right now: the bench asks the type checker, not a guess.
//
// dtype and threads are being added to LoadOptions (src/models/decoder.ts) while this bench is
// used. DecoderModel.load ignores an option it does not know, so passing { dtype: "int8" } to a model
// without int8 would silently time f32 under the wrong label. Instead the bench reads LoadOptions'
// declared properties (inherited ones included) with TypeScript's compiler API, and runs a dtype
// or thread count only when the type declares it; everything else gets a "not available" line.
import path from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

export interface LoadOptionsInfo {
  /** Every property of LoadOptions, e.g. ["build", "bytes", …, "onProgress", "residentLayers"]. */
  properties: string[];
  /** The string literals `dtype` accepts (["f32", "f16", "int8"]), or null without a dtype option. */
  dtypes: string[] | null;
  /** Whether a `threads` option exists. */
  threads: boolean;
  /** Where the answer came from (for the report). */
  source: string;
}

const MODEL_TS = fileURLToPath(new URL("../src/models/decoder.ts", import.meta.url));

export function readLoadOptions(file = MODEL_TS): LoadOptionsInfo {
  const program = ts.createProgram([file], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const sf = program.getSourceFile(file);
  const moduleSymbol = sf && checker.getSymbolAtLocation(sf);
  const sym = moduleSymbol && checker.getExportsOfModule(moduleSymbol).find((s) => s.name === "LoadOptions");
  if (!sf || !sym) throw new Error(`bench: no exported LoadOptions in ${file}`);
  const type = checker.getDeclaredTypeOfSymbol(sym);
  const props = checker.getPropertiesOfType(type);
  const literals = (p: ts.Symbol): string[] => {
    const t = checker.getNonNullableType(checker.getTypeOfSymbolAtLocation(p, sf));
    const parts = t.isUnion() ? t.types : [t];
    return parts.filter((x): x is ts.StringLiteralType => x.isStringLiteral()).map((x) => x.value);
  };
  const dtype = props.find((p) => p.name === "dtype");
  return {
    properties: props.map((p) => p.name),
    dtypes: dtype ? literals(dtype) : null,
    threads: props.some((p) => p.name === "threads"),
    source: path.relative(process.cwd(), file) || file,
  };
}
