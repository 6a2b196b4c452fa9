// Chat templates (src/tokenizer/chat.ts): real templates copied verbatim from the hub's
// tokenizer_config.json files (test/fixtures/chat-templates/, see test/fixtures/README.md), with
// expected strings derived by reading each template as Jinja with transformers' settings
// (trim_blocks: the first newline after a {% block %} tag is dropped; lstrip_blocks; a newline
// after {{ ... }} is kept). Encoding follows apply_chat_template(tokenize=True): the rendered
// text encoded without adding special tokens.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type ChatMessage, parseTokenizerConfig, Tokenizer, validateMessages } from "../src/tokenizer/index.js";
import { loadTokenizer } from "../src/tokenizer/node.js";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const read = (...path: string[]) => readFileSync(join(FIXTURES, ...path), "utf8");
const GPT2_JSON = read("gpt2-tokenizer", "tokenizer.json");
const LLAMA2_JSON = read("llama2-style-tokenizer", "tokenizer.json");

/** A template's tokenizer_config.json over a tokenizer.json (the vocabulary does not change the text). */
function withTemplate(configFile: string, tokenizerJson: string, extraConfig: Record<string, unknown> = {}): Tokenizer {
  const config = { ...JSON.parse(read("chat-templates", configFile)), ...extraConfig };
  return Tokenizer.fromTokenizerJson(tokenizerJson, parseTokenizerConfig(JSON.stringify(config)), "in test");
}

// ChatML over GPT-2's vocabulary, with <|im_start|> / <|im_end|> added as SmolLM2's and Qwen2's
// tokenizer_config.json add them (added_tokens_decoder), at the next ids.
const chatmlTokens = {
  added_tokens_decoder: {
    50257: { content: "<|im_start|>", special: true, lstrip: false, rstrip: false, normalized: false, single_word: false },
    50258: { content: "<|im_end|>", special: true, lstrip: false, rstrip: false, normalized: false, single_word: false },
  },
};

const user = (content: string): ChatMessage => ({ role: "user", content });
const assistant = (content: string): ChatMessage => ({ role: "assistant", content });
const system = (content: string): ChatMessage => ({ role: "system", content });

describe("SmolLM2-Instruct (ChatML with a default system turn)", () => {
  const t = withTemplate("smollm2-instruct.tokenizer_config.json", GPT2_JSON, chatmlTokens);
  // The template: before the first message, if it is not a system one, a default system turn;
  // each message as <|im_start|>{role}\n{content}<|im_end|>\n; then <|im_start|>assistant\n.
  const SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

  it("renders the default system turn, the messages and the generation prompt", () => {
    expect(t.applyChatTemplate([user("Hi")], { addGenerationPrompt: true })).toBe(
      SYSTEM + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.applyChatTemplate([user("Hi")])).toBe(SYSTEM + "<|im_start|>user\nHi<|im_end|>\n");
    expect(t.applyChatTemplate([system("Be brief."), user("Hi"), assistant("Hello!"), user("2+2?")], { addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n" +
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("encodes the rendered text without adding special tokens; <|im_start|>/<|im_end|> are single ids", () => {
    const messages = [user("Hello world")];
    const text = t.applyChatTemplate(messages, { addGenerationPrompt: true });
    const ids = t.encodeChat(messages);
    expect(ids).toEqual(t.encode(text, { addSpecialTokens: false }));
    expect(ids[0]).toBe(50257);
    expect(ids.filter((id) => id === 50258)).toHaveLength(2);
    const prompt = [50257, ...t.encode("assistant\n")];
    expect(ids.slice(-prompt.length)).toEqual(prompt);
    expect(t.decode(ids)).toBe(text);
    // The ids end the turn at <|im_end|>, which is also SmolLM2's EOS.
    expect(t.eosTokenId).toBe(50258);
    expect(t.chatStopTokenIds).toEqual([50258]);
  });
});

describe("Qwen2-Instruct (the same ChatML, another default system turn)", () => {
  const t = withTemplate("qwen2-instruct.tokenizer_config.json", GPT2_JSON, chatmlTokens);
  it("renders", () => {
    expect(t.applyChatTemplate([user("Hi")], { addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });
  it("bos_token null in the config: no BOS, and templates see no bos_token", () => {
    expect(t.bosTokenId).toBeNull();
    expect(t.applyChatTemplate([user("x")], { chatTemplate: "[{{ bos_token }}]" })).toBe("[]");
    expect(t.applyChatTemplate([user("x")], { chatTemplate: "{{ eos_token }}|{{ additional_special_tokens | join(',') }}" })).toBe(
      "<|im_end|>|<|im_start|>,<|im_end|>",
    );
  });
});

describe("TinyLlama-Chat (zephyr style, newlines between tags)", () => {
  const t = withTemplate("tinyllama-chat.tokenizer_config.json", LLAMA2_JSON);
  // Each `{% ... %}\n` loses its newline (trim_blocks); each `{{ ... }}\n` keeps it. So a message is
  // "<|{role}|>\n{content}</s>\n", and the generation prompt "<|assistant|>\n" — the text of
  // TinyLlama-1.1B-Chat-v1.0's model card.
  it("renders", () => {
    expect(t.applyChatTemplate([system("You are a friendly chatbot."), user("Hello")], { addGenerationPrompt: true })).toBe(
      "<|system|>\nYou are a friendly chatbot.</s>\n<|user|>\nHello</s>\n<|assistant|>\n",
    );
    expect(t.applyChatTemplate([user("Hello"), assistant("Hi!")])).toBe("<|user|>\nHello</s>\n<|assistant|>\nHi!</s>\n");
  });

  it("encodes: </s> in the text is the EOS id, and no BOS is added (the template writes none)", () => {
    const ids = t.encodeChat([user("Hello")]);
    expect(ids[0]).not.toBe(1);
    expect(ids).toContain(2);
    expect(ids).toEqual(t.encode("<|user|>\nHello</s>\n<|assistant|>\n", { addSpecialTokens: false }));
    expect(t.chatStopTokenIds).toEqual([2]);
  });
});

describe("Llama-2-chat ([INST] with <<SYS>>, raise_exception on role order)", () => {
  const t = loadTokenizer(join(FIXTURES, "llama2-style-tokenizer")); // its tokenizer_config.json is Llama-2-7b-chat-hf's
  // The template: an optional first system message is folded into the first user turn as
  // "<<SYS>>\n{system}\n<</SYS>>\n\n{user}"; a user turn is bos + "[INST] " + content.strip() +
  // " [/INST]", an assistant turn " " + content.strip() + " " + eos. It has no generation prompt.
  const conversation = [system("Be kind."), user(" Hi "), assistant("Hello! "), user("Bye")];
  const expected = "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n Hi [/INST] Hello! </s><s>[INST] Bye [/INST]";

  it("renders; add_generation_prompt changes nothing for this template", () => {
    expect(t.applyChatTemplate(conversation)).toBe(expected);
    expect(t.applyChatTemplate(conversation, { addGenerationPrompt: true })).toBe(expected);
    expect(t.applyChatTemplate([user("Hi")])).toBe("<s>[INST] Hi [/INST]");
  });

  it("raise_exception gives an Error with the template's message", () => {
    expect(() => t.applyChatTemplate([user("a"), user("b")])).toThrow(
      new Error("chat template: Conversation roles must alternate user/assistant/user/assistant/..."),
    );
    expect(() => t.encodeChat([assistant("first")])).toThrow("Conversation roles must alternate");
  });

  it("encodes each <s> / </s> in the text as one special id, adding no second BOS", () => {
    const ids = t.encodeChat(conversation);
    expect(ids.filter((id) => id === 1)).toHaveLength(2);
    expect(ids.filter((id) => id === 2)).toHaveLength(1);
    expect(ids[0]).toBe(1);
    expect(ids[1]).not.toBe(1);
    expect(t.decode(ids)).toBe(expected.replace("<s>[INST]", "<s> [INST]").replace("</s><s>[INST]", "</s><s> [INST]"));
  });
});

describe("template selection and errors", () => {
  it("a tokenizer without a template: one line naming the tokenizer directory", () => {
    const dir = join(FIXTURES, "gpt2-tokenizer");
    const t = loadTokenizer(dir);
    expect(t.chatTemplate).toBeNull();
    expect(() => t.applyChatTemplate([user("Hi")])).toThrow(
      `no chat template for the tokenizer in ${JSON.stringify(dir)} (no chat_template in tokenizer_config.json and no chat_template.jinja)`,
    );
    // A template passed in still works.
    expect(t.applyChatTemplate([user("Hi")], { chatTemplate: "{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}" })).toBe(
      "user: Hi",
    );
  });

  it("named templates (the list-of-{name, template} form): default, tool_use when tools are given, or by name", () => {
    const config = parseTokenizerConfig(
      JSON.stringify({
        chat_template: [
          { name: "default", template: "D{{ messages | length }}" },
          { name: "tool_use", template: "T{{ tools | length }}" },
          { name: "rag", template: "R{{ documents[0].title }}" },
        ],
      }),
    );
    const t = Tokenizer.fromTokenizerJson(LLAMA2_JSON, config);
    expect(t.chatTemplate).toBe("D{{ messages | length }}");
    expect(t.applyChatTemplate([user("a"), user("b")])).toBe("D2");
    expect(t.applyChatTemplate([user("a")], { tools: [{ type: "function" }] })).toBe("T1");
    expect(t.applyChatTemplate([user("a")], { chatTemplate: "rag", documents: [{ title: "X" }] })).toBe("RX");
    const noDefault = Tokenizer.fromTokenizerJson(
      LLAMA2_JSON,
      parseTokenizerConfig(JSON.stringify({ chat_template: [{ name: "a", template: "x" }] })),
      "in d",
    );
    expect(() => noDefault.applyChatTemplate([user("a")])).toThrow(
      'chat template: the tokenizer in d has named templates (a) and none is "default"; pass chatTemplate',
    );
  });

  it("chat_template.jinja wins over tokenizer_config.json's chat_template", () => {
    const t = Tokenizer.fromFiles({
      tokenizerJson: LLAMA2_JSON,
      tokenizerConfigJson: read("llama2-style-tokenizer", "tokenizer_config.json"),
      chatTemplateJinja: "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}",
    });
    expect(t.applyChatTemplate([user("Hi")])).toBe("<s><user>Hi</s>");
  });

  it("variables, tools = none when not given, strftime_now", () => {
    const t = Tokenizer.fromTokenizerJson(
      LLAMA2_JSON,
      parseTokenizerConfig(
        JSON.stringify({
          chat_template:
            "{% if tools is not none %}tools{% else %}no tools{% endif %}|{{ enable_thinking }}|{{ strftime_now('%Y') | length }}",
        }),
      ),
    );
    expect(t.applyChatTemplate([user("a")], { variables: { enable_thinking: false } })).toBe("no tools|false|4");
    expect(t.applyChatTemplate([user("a")], { tools: [] })).toMatch(/^tools\|/);
  });

  it("a template that does not parse, or fails while rendering: one line naming it", () => {
    const t = Tokenizer.fromTokenizerJson(LLAMA2_JSON, {}, "in x");
    expect(() => t.applyChatTemplate([user("a")], { chatTemplate: "{% for %}" })).toThrow(/^chat template of in x cannot be parsed: /);
    expect(() => t.applyChatTemplate([user("a")], { chatTemplate: "{{ messages | nosuchfilter }}" })).toThrow(
      /^chat template: .*nosuchfilter/,
    );
  });

  it("a malformed chat_template in tokenizer_config.json", () => {
    expect(() => parseTokenizerConfig('{"chat_template": 5}')).toThrow(
      'tokenizer_config.json: chat_template must be a string or a list of {"name": ..., "template": ...}',
    );
    expect(() => parseTokenizerConfig('{"chat_template": [{"name": "default"}]}')).toThrow("chat_template must be a string or a list");
  });
});

describe("message validation", () => {
  const cases: [unknown, string][] = [
    [{ role: "user", content: "x" }, "chat messages must be an array of {role, content} objects, got an object"],
    ["hi", "chat messages must be an array of {role, content} objects, got string"],
    [[null], 'chat messages[0] must be an object with string "role" and "content", got null'],
    [[["user", "x"]], 'chat messages[0] must be an object with string "role" and "content", got an array'],
    [[{ role: "user", content: "x" }, { content: "y" }], "chat messages[1].role must be a string, got undefined"],
    [[{ role: "user", content: 5 }], "chat messages[0].content must be a string, got number"],
    [[{ role: "user", content: null }], "chat messages[0].content must be a string, got null"],
  ];
  for (const [messages, message] of cases) {
    it(message, () => {
      expect(() => validateMessages(messages)).toThrow(message);
      const t = Tokenizer.fromTokenizerJson(LLAMA2_JSON, parseTokenizerConfig(read("llama2-style-tokenizer", "tokenizer_config.json")));
      expect(() => t.applyChatTemplate(messages as ChatMessage[])).toThrow(message);
    });
  }
  it("an empty conversation is valid (the template decides what it renders)", () => {
    expect(() => validateMessages([])).not.toThrow();
  });
});
