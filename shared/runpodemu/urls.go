package runpodemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/brightrun/brightrun/shared/contract"
)

// Presigned URLs asked for when they are needed, as gpu-image's urls.py
// does: a signed urls callback (numbered, retried and fenced like every
// callback) whose 200 body carries {"urls": {name: {url, method,
// headers}}, "expires_at", "checkpoint"?}. A server that answers 400,
// 404, 405 or 501 does not hand out URLs: the broker remembers it, and
// the worker uses the job spec's URLs and stores no checkpoints. A
// transient failure or a malformed answer fails only that request.

// unsupportedURLStatus are the answers that mean "this server does not
// hand out URLs this way".
var unsupportedURLStatus = []int{http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented}

// grant is one answered urls request.
type grant struct {
	urls       map[string]contract.PresignedURL
	checkpoint *contract.CheckpointManifest // checkpoint_download only; nil when the job has none
}

// urlBroker asks the control plane for URLs and remembers when it cannot.
type urlBroker struct {
	cb  *callbacks
	log *slog.Logger

	mu            sync.Mutex
	known         bool // an answer told whether URLs are handed out
	supported     bool
	refusedStatus int
}

// unsupported reports whether the server said it hands out no URLs.
func (b *urlBroker) unsupported() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known && !b.supported
}

// refused is the status of the answer that said no URLs are handed out.
func (b *urlBroker) refused() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refusedStatus
}

// confirmed reports whether the server has handed out URLs.
func (b *urlBroker) confirmed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known && b.supported
}

// ask returns fresh URLs for files, or nil: the server hands out none
// (unsupported then reports true), a transient failure, or a malformed
// answer. Uploads give each file's size and sha256.
func (b *urlBroker) ask(ctx context.Context, purpose string, files []contract.URLFile, step int64, checkpointID string, retry int) *grant {
	if b.unsupported() {
		return nil
	}
	req := &contract.URLRequest{Purpose: purpose, Files: files, Step: step, CheckpointID: checkpointID, Retry: retry}
	status, body, ok := b.cb.request(ctx, req)
	if slices.Contains(unsupportedURLStatus, status) {
		b.mu.Lock()
		first := !b.known || b.supported
		b.known, b.supported, b.refusedStatus = true, false, status
		b.mu.Unlock()
		if first {
			b.log.Warn("the server does not hand out URLs: using the job spec's URLs, and checkpoints are not uploaded in this attempt",
				"status", status)
		}
		return nil
	}
	if !ok {
		b.log.Warn("urls: no answer; this request fails, the next one asks again", "purpose", purpose, "status", status)
		return nil
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	g, err := parseAnswer(body, purpose, names)
	if err != nil {
		b.log.Warn("urls: the server's answer is unusable", "purpose", purpose, "error", err)
		return nil
	}
	b.mu.Lock()
	b.known, b.supported = true, true
	b.mu.Unlock()
	return g
}

// parseAnswer checks a 200 answer: every file asked for (and, for
// checkpoint_download, every file of the answered checkpoint) has a URL
// with the method the purpose needs: PUT for uploads, GET for downloads.
func parseAnswer(body []byte, purpose string, names []string) (*grant, error) {
	var doc struct {
		URLs       map[string]json.RawMessage   `json:"urls"`
		Checkpoint *contract.CheckpointManifest `json:"checkpoint"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("not a JSON object with urls")
	}
	if doc.URLs == nil {
		return nil, errors.New("urls: must be an object")
	}
	method := http.MethodGet
	if purpose == contract.PurposeCheckpoint || purpose == contract.PurposeArtifact {
		method = http.MethodPut
	}
	var problems []string
	g := &grant{urls: map[string]contract.PresignedURL{}}
	for name, raw := range doc.URLs {
		var u contract.PresignedURL
		switch {
		case json.Unmarshal(raw, &u) != nil:
			problems = append(problems, "urls."+name+": must be an object with url and method")
		case !strings.HasPrefix(u.URL, "http://") && !strings.HasPrefix(u.URL, "https://"):
			problems = append(problems, "urls."+name+".url: must be an http(s) URL")
		case u.Method != method:
			problems = append(problems, fmt.Sprintf("urls.%s.method: must be %s, got %q", name, method, u.Method))
		default:
			g.urls[name] = u
		}
	}
	if purpose == contract.PurposeCheckpointDownload && doc.Checkpoint != nil {
		m := doc.Checkpoint
		if m.Step < 1 {
			problems = append(problems, "checkpoint.step: must be at least 1")
		}
		if len(m.Files) == 0 {
			problems = append(problems, "checkpoint.files: must be a non-empty list")
		}
		for i, f := range m.Files {
			if !contract.ValidFileName(f.Name) || f.SizeBytes < 1 || !validSHA256(f.SHA256) {
				problems = append(problems, fmt.Sprintf("checkpoint.files[%d]: needs a file name, a size and a sha256", i))
			}
			names = append(names, f.Name)
		}
		g.checkpoint = m
	}
	var missing []string
	for _, n := range names {
		if _, ok := g.urls[n]; !ok && !slices.Contains(missing, n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		problems = append(problems, "urls: lacks "+strings.Join(missing, ", "))
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return g, nil
}

func validSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
