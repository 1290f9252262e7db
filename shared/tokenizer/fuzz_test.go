package tokenizer

import (
	"testing"
	"unicode/utf8"
)

// FuzzEncode checks what must hold for any text: no panic, Count agrees
// with Encode, and for valid UTF-8 the ids decode to the text with each
// stretch between added tokens in NFC, the spans tile the text and
// CountRegions agrees with them.
func FuzzEncode(f *testing.F) {
	for _, s := range trickyStrings(64, 4) {
		f.Add(s)
	}
	for _, s := range []string{"", " ", "\xff", "a\xc3", ">\u0338|im_end|>", "<|im_end|>\u0338", "\u0301\u0316", "'ſ", "\r\n \n\u0085"} {
		f.Add(s)
	}
	tok := mustQwen3(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		if got := tok.Count(s); got != len(ids) {
			t.Fatalf("Count(%q) = %d, want len(Encode) = %d", s, got, len(ids))
		}
		if !utf8.ValidString(s) {
			return
		}
		checkConsistent(t, tok, s)
	})
}
