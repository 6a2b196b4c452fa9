// Generation for a conversation: the prompt is the tokenizer's chat template rendered with an
// assistant turn opened and encoded without adding special tokens (transformers'
// apply_chat_template(add_generation_prompt=True, tokenize=True)); the turn ends at the
// tokenizer's chat stop ids (its EOS and the template's end-of-turn token) or the model's EOS.
import type { DecoderModel } from "../models/decoder.js";
import type { ChatMessage, ChatTemplateOptions, Tokenizer } from "../tokenizer/index.js";
import { streamGenerate, type GenerateOptions, type GenerateResult, type TextCodec, type TokenEvent } from "./index.js";

export type ChatGenerateOptions = GenerateOptions & Pick<ChatTemplateOptions, "tools" | "documents" | "chatTemplate" | "variables">;

/** The prompt ids and stop ids of a conversation (stopTokenIds add to the chat's; ignoreEos drops the model's EOS). */
export function chatPrompt(
  model: DecoderModel,
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  o: ChatGenerateOptions = {},
): { ids: number[]; stopTokenIds: number[] } {
  const ids = tokenizer.encodeChat(messages, {
    tools: o.tools,
    documents: o.documents,
    chatTemplate: o.chatTemplate,
    variables: o.variables,
  });
  const stops = new Set([...tokenizer.chatStopTokenIds, ...(o.stopTokenIds ?? []), ...(o.ignoreEos ? [] : model.dims.eos)]);
  return { ids, stopTokenIds: [...stops] };
}

/**
 * Streams the assistant's reply. Its text leaves out special tokens (the stop token, which
 * generation does yield as its last id, among them), so it can go back into the history as the
 * assistant message.
 */
export async function* streamChat(
  model: DecoderModel,
  tokenizer: Tokenizer,
  messages: ChatMessage[],
  o: ChatGenerateOptions = {},
): AsyncGenerator<TokenEvent, GenerateResult> {
  const { ids, stopTokenIds } = chatPrompt(model, tokenizer, messages, o);
  const codec: TextCodec = {
    encode: (text) => tokenizer.encode(text),
    decode: (tokens) => tokenizer.decode(tokens, { skipSpecialTokens: true }),
    vocabSize: tokenizer.vocabSize,
  };
  return yield* streamGenerate(model, codec, ids, { ...o, stopTokenIds });
}
