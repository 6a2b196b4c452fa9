// The request bodies of the OpenAI endpoints, checked with zod (a maintained validator: typed
// results and the path of the first wrong field, for a 400 that names it).
// Unknown fields are dropped, as OpenAI ignores them; known fields of the wrong type or out of
// range are errors. Optional fields may be null (clients send null for "unset").
import { z } from "zod";

const nullish = <T extends z.ZodType>(t: T) => t.nullish();
const int = () => z.number().int();

const stop = z.union(
  [z.string().min(1, "must not be empty"), z.array(z.string().min(1, "must not be empty")).max(4, "at most 4 stop strings")],
  { error: "must be a string or an array of up to 4 strings" },
);

// Shared by both endpoints.
const common = {
  model: nullish(z.string()),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().gt(0, "must be in (0, 1]").max(1, "must be in (0, 1]")),
  /** Extension (vLLM's): keep the k most likely tokens; 0 or -1 = off. */
  top_k: nullish(int().min(-1)),
  /** Extension (vLLM's): transformers' repetition penalty, > 0 (1 = off). */
  repetition_penalty: nullish(z.number().gt(0)),
  seed: nullish(int()),
  stop: nullish(stop),
  stream: nullish(z.boolean()),
  stream_options: nullish(z.object({ include_usage: nullish(z.boolean()) })),
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  n: nullish(int().refine((n) => n === 1, "only n = 1 is supported")),
  logit_bias: nullish(z.record(z.string(), z.number()).refine((b) => Object.keys(b).length === 0, "logit_bias is not supported")),
  user: nullish(z.string()),
  /** Extension (vLLM's): also return the prompt's and the completion's token ids. */
  return_token_ids: nullish(z.boolean()),
};

const tokenIds = z.array(int().min(0, "token ids are ≥ 0")).min(1, "must not be empty");

export const CompletionRequest = z.object({
  ...common,
  // One prompt per request: a string or token ids, or a list holding exactly one of them.
  prompt: z.union([z.string(), tokenIds, z.tuple([z.string()]), z.tuple([tokenIds])], {
    error: "must be a string or an array of token ids (one prompt per request)",
  }),
  max_tokens: nullish(int().min(1)),
  logprobs: nullish(int().min(0).max(5)),
  echo: nullish(z.boolean()),
  best_of: nullish(int().refine((n) => n === 1, "only best_of = 1 is supported")),
  suffix: nullish(z.string().max(0, "suffix is not supported")),
});
export type CompletionRequest = z.infer<typeof CompletionRequest>;

// Content as a string or as text parts (OpenAI's array form); other part types are refused.
const content = z.union(
  [
    z.string(),
    z.array(
      z.object({ type: z.literal("text"), text: z.string() }, { error: 'only text parts ({"type": "text", "text": ...}) are supported' }),
    ),
  ],
  { error: "must be a string or an array of text parts" },
);

const message = z.looseObject({ role: z.string(), content });

export const ChatRequest = z.object({
  ...common,
  messages: z.array(message).min(1, "must hold at least one message"),
  max_tokens: nullish(int().min(1)),
  max_completion_tokens: nullish(int().min(1)),
  logprobs: nullish(z.boolean()),
  top_logprobs: nullish(int().min(0).max(20)),
  response_format: nullish(z.object({ type: z.literal("text", 'only {"type": "text"} is supported') })),
  tools: nullish(z.array(z.unknown()).max(0, "tools are not supported")),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

/** The first problem of a failed parse: the field's path (OpenAI's `param`) and a message naming it. */
export function firstIssue(error: z.ZodError, body: unknown): { param: string; message: string } {
  const issue = error.issues[0];
  const param = issue.path.reduce<string>((p, k) => (typeof k === "number" ? `${p}[${k}]` : p ? `${p}.${String(k)}` : String(k)), "");
  const where = param === "" ? "the request body" : `'${param}'`;
  if (issue.code === "invalid_type") {
    const got = valueAt(body, issue.path);
    const missing = got === undefined;
    return {
      param,
      message: missing
        ? `Missing required parameter ${where}.`
        : `Invalid type for ${where}: expected ${issue.expected}, got ${kind(got)}.`,
    };
  }
  return { param, message: `Invalid value for ${where}: ${issue.message}.`.replace(/\.\.$/, ".") };
}

function valueAt(body: unknown, path: readonly PropertyKey[]): unknown {
  let v = body;
  for (const k of path) v = v !== null && typeof v === "object" ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : typeof v;
}
