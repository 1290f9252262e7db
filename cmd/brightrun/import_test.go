package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestDatasetsImport(t *testing.T) {
	sample, err := os.ReadFile(sampleFile)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chats.jsonl", func(w http.ResponseWriter, r *http.Request) { w.Write(sample) })
	mux.HandleFunc("GET /gone.jsonl", http.NotFound)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"a URL the stack can reach ends ready with the summary", []string{srv.URL + "/chats.jsonl", "--name", "imported chats"},
			0, []string{"imported chats", "status", "ready", "imported from", srv.URL + "/chats.jsonl"}},
		{"a URL that answers 404 ends invalid with the reason", []string{srv.URL + "/gone.jsonl"},
			1, []string{"invalid", "answered 404 Not Found"}},
		{"a private address is refused by the server", []string{"https://10.1.2.3/chats.jsonl"},
			3, []string{"10.1.2.3 is a private address"}},
		{"a source of another kind is a usage error", []string{"ftp://example.com/chats.jsonl"},
			2, []string{"https URL or s3://bucket/key"}},
		{"an S3 object outside the allowed prefixes is refused", []string{"s3://training-files/chats.jsonl"},
			3, []string{"not under a bucket and prefix"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, append([]string{"datasets", "import"}, tt.args...)...)
			if r.code != tt.code {
				t.Fatalf("brightrun datasets import %v: exit %d, want %d\n%s", tt.args, r.code, tt.code, r)
			}
			for _, want := range tt.contains {
				if !strings.Contains(r.stdout+r.stderr, want) {
					t.Errorf("brightrun datasets import %v: output lacks %q\n%s", tt.args, want, r)
				}
			}
		})
	}
}
