// Reference encoder (@huggingface/tokenizers): reads one JSON string per
// line on stdin and writes the Qwen3 token ids of each as a JSON array, one
// per line (add_special_tokens=false).
import { readFileSync } from "node:fs";
import { encode, load } from "./tokref.mjs";

const tok = load();
const out = [];
for (const line of readFileSync(0, "utf8").split("\n")) {
  if (line.trim() === "") continue;
  out.push(JSON.stringify(encode(tok, JSON.parse(line))));
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
