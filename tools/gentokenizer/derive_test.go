package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/brightrun/brightrun/shared/tokenizer/tokreftest"
)

// TestEmbeddedDataIsUpToDate regenerates the data from the pinned
// tokenizer.json and compares it with what package tokenizer embeds.
func TestEmbeddedDataIsUpToDate(t *testing.T) {
	root := tokreftest.Root(t)
	tokreftest.RequireTokenizerJSON(t, root)
	raw, err := os.ReadFile(tokreftest.TokenizerJSON(root))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Derive(raw)
	if err != nil {
		t.Fatalf("Derive() error: %v", err)
	}
	data := filepath.Join(root, "shared", "tokenizer", "data")

	gz, err := os.ReadFile(filepath.Join(data, BPEFile))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("open %s: %v", BPEFile, err)
	}
	embedded, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress %s: %v", BPEFile, err)
	}
	if !bytes.Equal(embedded, d.BPEBinary()) {
		t.Errorf("%s differs from Derive(): run go generate ./shared/tokenizer", BPEFile)
	}

	added, err := os.ReadFile(filepath.Join(data, AddedFile))
	if err != nil {
		t.Fatal(err)
	}
	want, err := d.AddedJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(added, want) {
		t.Errorf("%s differs from Derive(): run go generate ./shared/tokenizer", AddedFile)
	}
}

func TestDeriveRejectsAnotherFile(t *testing.T) {
	if _, err := Derive([]byte(`{"model": {}}`)); err == nil {
		t.Errorf("Derive(unpinned file) error = nil, want a sha256 mismatch")
	}
}
