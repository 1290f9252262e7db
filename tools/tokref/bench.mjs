// Counts the tokens of a chat JSONL file ({"messages": [...]} per line),
// rendered as ChatML, with @huggingface/tokenizers, and prints the speed.
// Usage: node tools/tokref/bench.mjs FILE.jsonl
import { readFileSync } from "node:fs";
import { encode, load, render } from "./tokref.mjs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node tools/tokref/bench.mjs FILE.jsonl");
  process.exit(2);
}
const texts = readFileSync(file, "utf8")
  .split("\n")
  .filter((l) => l.trim() !== "")
  .map((l) => render(JSON.parse(l).messages));
const tok = load();
let bytes = 0;
let tokens = 0;
const t0 = process.hrtime.bigint();
for (const t of texts) {
  bytes += Buffer.byteLength(t, "utf8");
  tokens += encode(tok, t).length;
}
const s = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(`${texts.length} conversations, ${bytes} bytes, ${tokens} tokens in ${s.toFixed(3)} s: ${(bytes / 1e6 / s).toFixed(2)} MB/s`);
