package tokenizer

import (
	"math/rand/v2"
	"strings"
)

// trickyFragments are the character classes the pre-tokenizer and the
// normalizer treat specially; trickyStrings mixes them at random.
var trickyFragments = []string{
	// letters, words, case
	"a", "Z", "hello", " world", "The", "WORLD", "ab", "naïve", "Straße",
	// contractions and apostrophes
	"'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'D", "'ſ", "ſ", "'", "’", "''",
	// digits and other numbers
	"0", "7", "42", "2026", "١٢", "½", "Ⅻ", "²", "３",
	// whitespace, Unicode and ASCII
	" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", "\v", "\f",
	"\u0085", "\u00a0", "\u1680", "\u2000", "\u2009", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000",
	// look like whitespace but are not \s
	"\ufeff", "\u200b", "\u200c", "\u200d", "\u180e", "\u2060", "\u001c", "\u001f",
	// punctuation and symbols
	".", ",", "!", "?", "...", "(", ")", "{", "}", "[", "]", "<", ">", "|", "/", "\\", "-", "_", "=", "+", "*", "&", "#", "@", "$", "%", "^", "~", "`", "\"", ";", ":",
	"->", "=>", "!=", "::", "//", "/*", "*/", "<<", ">>",
	// CJK, Hangul (jamo compose under NFC), other scripts
	"日本", "語", "中文", "你好", "，", "。", "！", "가", "\u1100\u1161", "\u11a8", "Привет", "مرحبا", "नमस्ते", "สวัสดี", "Γειά",
	// emoji
	"😀", "🎉", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🫠",
	// combining marks, NFC composition and reordering
	"\u0301", "\u0308", "\u0316", "\u0338", "e\u0301", "A\u030a", "\u212b", "\u212a", "\u2126", "\u20dd",
	// added tokens, whole and partial
	"<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
	"<|im_", "|im_end|>", "<|", "|>", ">\u0338", "<tool_", "<|fim_pad|>",
	// other oddities
	"\x00", "\x7f", "\u0080", "\ue000", "\U0010fffd", "\ufffd", "𝐀", "𠀀",
}

// trickyStrings returns n strings of 1 to 24 fragments from a fixed seed.
func trickyStrings(n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]string, n)
	var b strings.Builder
	for i := range out {
		b.Reset()
		for k := 1 + r.IntN(24); k > 0; k-- {
			b.WriteString(trickyFragments[r.IntN(len(trickyFragments))])
		}
		out[i] = b.String()
	}
	return out
}
