// Chat templates, rendered as transformers' apply_chat_template does, with @huggingface/jinja
// (the Jinja subset transformers.js uses for the same templates; it lexes with trim_blocks and
// lstrip_blocks, like transformers' environment, and has raise_exception and strftime_now).

import { Template } from "@huggingface/jinja";
import type { ChatTemplateSource } from "./config.js";

/** An OpenAI-style chat message. Other fields (name, tool_calls, ...) reach the template as they are. */
export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

export interface ChatTemplateOptions {
  /** End with the start of an assistant turn (transformers' add_generation_prompt). Default false. */
  addGenerationPrompt?: boolean;
  /** Tool (function) JSON schemas, as the template's `tools`; a named "tool_use" template is picked when given. */
  tools?: unknown[];
  /** Documents for retrieval-augmented templates, as the template's `documents`. */
  documents?: unknown[];
  /** A template to use instead of the tokenizer's: its source, or the name of one of its named templates. */
  chatTemplate?: string;
  /** More template variables (e.g. enable_thinking, date_string). */
  variables?: Record<string, unknown>;
}

/**
 * Tokens that end a turn in common templates: generation should stop at them as at the EOS
 * (SmolLM2 / Qwen2 ChatML, Llama 3, Gemma, Phi-3). Only those that the tokenizer has and the
 * template writes count.
 */
export const TURN_END_TOKENS = ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"] as const;

/** Throws a one-line Error naming the first malformed message. */
export function validateMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) throw new Error(`chat messages must be an array of {role, content} objects, got ${kind(messages)}`);
  messages.forEach((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) {
      throw new Error(`chat messages[${i}] must be an object with string "role" and "content", got ${kind(m)}`);
    }
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== "string") throw new Error(`chat messages[${i}].role must be a string, got ${kind(role)}`);
    if (typeof content !== "string") throw new Error(`chat messages[${i}].content must be a string, got ${kind(content)}`);
  });
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : typeof v;
}

/** The templates of one tokenizer, parsed once each. */
export class ChatTemplates {
  private readonly parsed = new Map<string, Template>();

  /**
   * @param source tokenizer_config.json's chat_template or a chat_template.jinja file
   * @param where  where the tokenizer came from, for the error when there is no template
   * @param specialTokens bos_token, eos_token, ... as strings, as transformers passes them
   */
  constructor(
    readonly source: ChatTemplateSource | undefined,
    private readonly where: string,
    private readonly specialTokens: Readonly<Record<string, string | readonly string[]>>,
  ) {}

  /** The template apply() uses by default (for `tools`, the named "tool_use" one if any), or null. */
  select(options: Pick<ChatTemplateOptions, "chatTemplate" | "tools"> = {}): string | null {
    const s = this.source;
    const named = typeof s === "object" ? s : undefined;
    if (options.chatTemplate !== undefined) return named?.[options.chatTemplate] ?? options.chatTemplate;
    if (s === undefined) return null;
    if (!named) return s as string;
    if (options.tools !== undefined && named.tool_use !== undefined) return named.tool_use;
    if (named.default !== undefined) return named.default;
    throw new Error(
      `chat template: the tokenizer ${this.where} has named templates (${Object.keys(named).join(", ")}) and none is "default"; pass chatTemplate`,
    );
  }

  /** transformers' apply_chat_template(messages, tokenize=False, ...). */
  apply(messages: ChatMessage[], options: ChatTemplateOptions = {}): string {
    validateMessages(messages);
    const source = this.select(options);
    if (source === null) {
      throw new Error(
        `no chat template for the tokenizer ${this.where} (no chat_template in tokenizer_config.json and no chat_template.jinja)`,
      );
    }
    let template = this.parsed.get(source);
    if (!template) {
      try {
        template = new Template(source);
      } catch (e) {
        throw new Error(`chat template of ${this.where} cannot be parsed: ${messageOf(e)}`, { cause: e });
      }
      this.parsed.set(source, template);
    }
    try {
      return template.render({
        ...this.specialTokens,
        ...options.variables,
        messages,
        // None, not undefined, as transformers passes them: "tools is not none" must be false.
        tools: options.tools ?? null,
        documents: options.documents ?? null,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (e) {
      // raise_exception('...') in a template throws an Error with exactly the template's message.
      throw new Error(`chat template: ${messageOf(e)}`, { cause: e });
    }
  }

  /** The TURN_END_TOKENS that some template writes. */
  turnEndTokens(): string[] {
    const s = this.source;
    const sources = s === undefined ? [] : typeof s === "string" ? [s] : Object.values(s);
    return TURN_END_TOKENS.filter((t) => sources.some((src) => src.includes(t)));
  }
}

function messageOf(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, " ");
}
