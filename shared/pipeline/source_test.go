package pipeline_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/brightrun/brightrun/shared/pipeline"
)

func TestParseImportSource(t *testing.T) {
	tests := []struct {
		raw  string
		want pipeline.ImportSource
		ok   bool
	}{
		{"https://example.com/data.jsonl", pipeline.ImportSource{URL: "https://example.com/data.jsonl"}, true},
		{"http://127.0.0.1:8080/x.jsonl?sig=abc", pipeline.ImportSource{URL: "http://127.0.0.1:8080/x.jsonl?sig=abc"}, true},
		{"s3://training-files/exports/a.jsonl", pipeline.ImportSource{Bucket: "training-files", Key: "exports/a.jsonl"}, true},
		{"S3://training-files/a b.jsonl", pipeline.ImportSource{Bucket: "training-files", Key: "a b.jsonl"}, true},
		{"s3://training-files", pipeline.ImportSource{}, false},
		{"s3://training-files/", pipeline.ImportSource{}, false},
		{"s3://Training_Files/a.jsonl", pipeline.ImportSource{}, false},
		{"s3://ab/a.jsonl", pipeline.ImportSource{}, false},
		{"s3://-bucket/a.jsonl", pipeline.ImportSource{}, false},
		{"s3://my..bucket/a.jsonl", pipeline.ImportSource{}, false},
		{"s3://bucket/a\n.jsonl", pipeline.ImportSource{}, false},
		{"s3://bucket/" + strings.Repeat("k", 1025), pipeline.ImportSource{}, false},
		{"ftp://example.com/data.jsonl", pipeline.ImportSource{}, false},
		{"file:///etc/passwd", pipeline.ImportSource{}, false},
		{"example.com/data.jsonl", pipeline.ImportSource{}, false},
		{"https:///data.jsonl", pipeline.ImportSource{}, false},
		{"https://example.com/a b", pipeline.ImportSource{}, false},
		{"https://example.com/" + strings.Repeat("a", 2048), pipeline.ImportSource{}, false},
		{"", pipeline.ImportSource{}, false},
		{"\xff", pipeline.ImportSource{}, false},
	}
	for _, tt := range tests {
		got, err := pipeline.ParseImportSource(tt.raw)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseImportSource(%q) = %+v, %v; want %+v, ok %v", tt.raw, got, err, tt.want, tt.ok)
		}
		if err != nil && pipeline.ErrorCode(err) != pipeline.EInvalid {
			t.Errorf("ParseImportSource(%q) error code = %s, want %s", tt.raw, pipeline.ErrorCode(err), pipeline.EInvalid)
		}
	}
}

func TestParseS3PrefixesAndAllowedS3(t *testing.T) {
	prefixes, err := pipeline.ParseS3Prefixes(" training-files/exports/ , s3://whole-bucket/ , ")
	if err != nil {
		t.Fatal(err)
	}
	want := []pipeline.S3Prefix{{Bucket: "training-files", Prefix: "exports/"}, {Bucket: "whole-bucket", Prefix: ""}}
	if len(prefixes) != len(want) || prefixes[0] != want[0] || prefixes[1] != want[1] {
		t.Fatalf("ParseS3Prefixes = %+v, want %+v", prefixes, want)
	}
	tests := []struct {
		src  string
		want bool
	}{
		{"s3://training-files/exports/a.jsonl", true},
		{"s3://training-files/exports/deep/b.jsonl", true},
		{"s3://training-files/private/a.jsonl", false},
		{"s3://training-files/exports", false},
		{"s3://whole-bucket/anything.jsonl", true},
		{"s3://other-bucket/exports/a.jsonl", false},
		{"https://training-files/exports/a.jsonl", false},
	}
	for _, tt := range tests {
		src, err := pipeline.ParseImportSource(tt.src)
		if err != nil {
			t.Fatal(err)
		}
		if got := pipeline.AllowedS3(prefixes, src); got != tt.want {
			t.Errorf("AllowedS3(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
	// A bucket without its slash would grant every bucket it begins
	// (arn:aws:s3:::whole-bucket* matches whole-bucket-private).
	for _, bad := range []string{"UPPER/x", "bucket/x*", "ab", "bucket/a\x00", "whole-bucket"} {
		if _, err := pipeline.ParseS3Prefixes(bad); err == nil {
			t.Errorf("ParseS3Prefixes(%q) = nil error, want a refusal", bad)
		}
	}
}

// FuzzParseImportSource: whatever the input, a source it accepts is one
// of the two kinds, prints back to an equivalent source, and holds no
// control character; nothing panics.
func FuzzParseImportSource(f *testing.F) {
	for _, s := range []string{"https://example.com/a.jsonl", "s3://bucket/key.jsonl", "s3://b/", "S3://bucket/a/b/c", "http://[::1]:80/x", "s3://bucket/\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		src, err := pipeline.ParseImportSource(raw)
		if err != nil {
			if pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Fatalf("ParseImportSource(%q) error %v, want code invalid", raw, err)
			}
			return
		}
		if (src.URL == "") == (src.Bucket == "") || !utf8.ValidString(src.String()) {
			t.Fatalf("ParseImportSource(%q) = %+v: want exactly one kind of valid UTF-8", raw, src)
		}
		again, err := pipeline.ParseImportSource(src.String())
		if err != nil || again != src {
			t.Fatalf("ParseImportSource(%q) = %+v; reparsed %+v, %v", raw, src, again, err)
		}
		if src.IsS3() && (src.Key == "" || len(src.Key) > pipeline.MaxS3KeyLength) {
			t.Fatalf("ParseImportSource(%q) = %+v: bad key", raw, src)
		}
	})
}

func FuzzParseS3Prefixes(f *testing.F) {
	for _, s := range []string{"bucket/prefix/", "a-b.c/x,other/y", " , ", "s3://bucket"} {
		f.Add(s, "s3://bucket/prefix/key")
	}
	f.Fuzz(func(t *testing.T, list, source string) {
		prefixes, err := pipeline.ParseS3Prefixes(list)
		if err != nil {
			return
		}
		src, err := pipeline.ParseImportSource(source)
		if err != nil {
			return
		}
		allowed := pipeline.AllowedS3(prefixes, src)
		if allowed && !src.IsS3() {
			t.Fatalf("AllowedS3(%v, %q) = true for a URL", prefixes, source)
		}
		if allowed {
			ok := false
			for _, p := range prefixes {
				ok = ok || p.Bucket == src.Bucket && strings.HasPrefix(src.Key, p.Prefix)
			}
			if !ok {
				t.Fatalf("AllowedS3(%v, %q) = true, no prefix holds it", prefixes, source)
			}
		}
	})
}
