// Package blobtest is the conformance suite every pipeline.Blobs adapter
// must pass: presigned URLs bound to one object, method and size, that
// expire and refuse tampering, and multipart uploads with S3's rules.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// Harness is one adapter under test and the HTTP client that reaches its URLs.
type Harness struct {
	Blobs  pipeline.Blobs
	Client *http.Client
}

// Run runs the suite; newHarness is called once per subtest.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("a presigned PUT of the declared size stores the object", func(t *testing.T) { testPutGet(t, newHarness(t)) })
	t.Run("a PUT of another size is refused and stores nothing", func(t *testing.T) { testWrongSize(t, newHarness(t)) })
	t.Run("a PUT whose content differs from the signed sha256 is refused", func(t *testing.T) { testWrongChecksum(t, newHarness(t)) })
	t.Run("a tampered URL is refused", func(t *testing.T) { testTampered(t, newHarness(t)) })
	t.Run("an expired URL is refused", func(t *testing.T) { testExpired(t, newHarness(t)) })
	t.Run("a GET URL does not allow a PUT", func(t *testing.T) { testWrongMethod(t, newHarness(t)) })
	t.Run("a multipart upload joins its parts in order", func(t *testing.T) { testMultipart(t, newHarness(t)) })
	t.Run("a multipart upload refuses small parts, bad ETags and aborts cleanly", func(t *testing.T) { testMultipartRules(t, newHarness(t)) })
	t.Run("a deleted object is gone", func(t *testing.T) { testDelete(t, newHarness(t)) })
	t.Run("a folder lists its objects, and no other's", func(t *testing.T) { testListKeys(t, newHarness(t)) })
	t.Run("a download URL names the file to save", func(t *testing.T) { testDownload(t, newHarness(t)) })
	t.Run("a create URL writes once and never replaces an object", func(t *testing.T) { testCreateOnce(t, newHarness(t)) })
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// do sends a presigned request with body; it returns the status and ETag.
func do(t *testing.T, h Harness, req pipeline.SignedRequest, body []byte) (int, string) {
	t.Helper()
	r, err := http.NewRequest(req.Method, req.URL, bytes.NewReader(body))
	must(t, err)
	for k, v := range req.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			r.Header.Set(k, v)
		}
	}
	if body == nil {
		r.Body = nil
	}
	resp, err := h.Client.Do(r)
	must(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag")
}

func get(t *testing.T, h Harness, key string) []byte {
	t.Helper()
	req, err := h.Blobs.PresignGet(context.Background(), key, time.Minute)
	must(t, err)
	resp, err := h.Client.Get(req.URL)
	must(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d %s", key, resp.StatusCode, data)
	}
	return data
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func wantNotFound(t *testing.T, h Harness, key string) {
	t.Helper()
	_, err := h.Blobs.Stat(context.Background(), key)
	if got := pipeline.ErrorCode(err); got != pipeline.ENotFound {
		t.Errorf("Stat(%q) error = %v (code %q), want %q", key, err, got, pipeline.ENotFound)
	}
}

func testPutGet(t *testing.T, h Harness) {
	ctx := context.Background()
	body := content(1234)
	req, err := h.Blobs.PresignPut(ctx, "datasets/alice/ds_1.jsonl", int64(len(body)), "", time.Minute)
	must(t, err)
	if req.Method != http.MethodPut || req.ExpiresAt.Before(time.Now()) {
		t.Errorf("PresignPut = %+v, want a PUT expiring in the future", req)
	}
	if status, _ := do(t, h, req, body); status != http.StatusOK {
		t.Fatalf("PUT of the declared size = %d, want 200", status)
	}
	info, err := h.Blobs.Stat(ctx, "datasets/alice/ds_1.jsonl")
	must(t, err)
	if info.Size != 1234 || info.ETag == "" {
		t.Errorf("Stat = %+v, want size 1234 and an ETag", info)
	}
	rc, info2, err := h.Blobs.Open(ctx, "datasets/alice/ds_1.jsonl")
	must(t, err)
	data, err := io.ReadAll(rc)
	rc.Close()
	must(t, err)
	if !bytes.Equal(data, body) || info2.Size != 1234 {
		t.Errorf("Open read %d bytes (size %d), want the 1234 bytes put", len(data), info2.Size)
	}
	if got := get(t, h, "datasets/alice/ds_1.jsonl"); !bytes.Equal(got, body) {
		t.Errorf("presigned GET returned %d bytes, want the 1234 bytes put", len(got))
	}
}

func testWrongSize(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, n := range []int{1233, 1235, 0} {
		req, err := h.Blobs.PresignPut(ctx, "datasets/alice/sized.jsonl", 1234, "", time.Minute)
		must(t, err)
		if status, _ := do(t, h, req, content(n)); status < 400 || status > 499 {
			t.Errorf("PUT of %d bytes to a URL for 1234 = %d, want 4xx", n, status)
		}
	}
	wantNotFound(t, h, "datasets/alice/sized.jsonl")
}

func testWrongChecksum(t *testing.T, h Harness) {
	ctx := context.Background()
	body := content(300)
	sum := sha256.Sum256(body)
	req, err := h.Blobs.PresignPut(ctx, "datasets/alice/summed.jsonl", 300, hex.EncodeToString(sum[:]), time.Minute)
	must(t, err)
	other := content(300)
	other[0] = 'Z'
	if status, _ := do(t, h, req, other); status < 400 || status > 499 {
		t.Errorf("PUT of other content to a sha256-bound URL = %d, want 4xx", status)
	}
	wantNotFound(t, h, "datasets/alice/summed.jsonl")
	if status, _ := do(t, h, req, body); status != http.StatusOK {
		t.Errorf("PUT of the signed content = %d, want 200", status)
	}
}

func testTampered(t *testing.T, h Harness) {
	ctx := context.Background()
	req, err := h.Blobs.PresignPut(ctx, "datasets/alice/t.jsonl", 100, "", time.Minute)
	must(t, err)
	u, err := url.Parse(req.URL)
	must(t, err)
	// Another object: same query, other key.
	other := *u
	other.Path = strings.Replace(u.Path, "t.jsonl", "u.jsonl", 1)
	// A flipped character in every query value that looks like a signature.
	flipped := *u
	q := u.Query()
	for k, vs := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "signature") && len(vs[0]) > 0 {
			v := []byte(vs[0])
			if v[0] == 'a' {
				v[0] = 'b'
			} else {
				v[0] = 'a'
			}
			q.Set(k, string(v))
		}
	}
	flipped.RawQuery = q.Encode()
	// A longer expiry.
	longer := *u
	q = u.Query()
	for k := range q {
		lk := strings.ToLower(k)
		if strings.Contains(lk, "expires") {
			q.Set(k, "604800")
			if k == "expires" {
				q.Set(k, fmt.Sprint(time.Now().Add(100*time.Hour).Unix()))
			}
		}
	}
	longer.RawQuery = q.Encode()
	for name, target := range map[string]*url.URL{"other key": &other, "changed signature": &flipped, "longer expiry": &longer} {
		r := req
		r.URL = target.String()
		if status, _ := do(t, h, r, content(100)); status != http.StatusForbidden {
			t.Errorf("PUT to a URL with %s = %d, want 403", name, status)
		}
	}
	wantNotFound(t, h, "datasets/alice/t.jsonl")
	wantNotFound(t, h, "datasets/alice/u.jsonl")
}

func testExpired(t *testing.T, h Harness) {
	ctx := context.Background()
	req, err := h.Blobs.PresignPut(ctx, "datasets/alice/late.jsonl", 10, "", time.Second)
	must(t, err)
	time.Sleep(time.Until(req.ExpiresAt) + 1500*time.Millisecond)
	if status, _ := do(t, h, req, content(10)); status != http.StatusForbidden {
		t.Errorf("PUT to an expired URL = %d, want 403", status)
	}
	wantNotFound(t, h, "datasets/alice/late.jsonl")
}

func testWrongMethod(t *testing.T, h Harness) {
	ctx := context.Background()
	req, err := h.Blobs.PresignGet(ctx, "datasets/alice/g.jsonl", time.Minute)
	must(t, err)
	req.Method = http.MethodPut
	if status, _ := do(t, h, req, content(10)); status < 400 || status > 499 {
		t.Errorf("PUT to a GET URL = %d, want 4xx", status)
	}
	wantNotFound(t, h, "datasets/alice/g.jsonl")
}

func uploadParts(t *testing.T, h Harness, key, id string, parts [][]byte) []pipeline.CompletedPart {
	t.Helper()
	var done []pipeline.CompletedPart
	for i, p := range parts {
		req, err := h.Blobs.PresignPart(context.Background(), key, id, i+1, int64(len(p)), time.Minute)
		must(t, err)
		status, etag := do(t, h, req, p)
		if status != http.StatusOK || etag == "" {
			t.Fatalf("PUT part %d = %d (ETag %q), want 200 with an ETag", i+1, status, etag)
		}
		done = append(done, pipeline.CompletedPart{Number: i + 1, ETag: etag})
	}
	return done
}

func testMultipart(t *testing.T, h Harness) {
	ctx := context.Background()
	key := "datasets/alice/big.jsonl"
	id, err := h.Blobs.CreateMultipart(ctx, key)
	must(t, err)
	first := content(pipeline.MinPartSize)
	second := bytes.Repeat([]byte("z"), 1000)
	parts := uploadParts(t, h, key, id, [][]byte{first, second})
	info, err := h.Blobs.CompleteMultipart(ctx, key, id, parts)
	must(t, err)
	if info.Size != int64(len(first)+len(second)) {
		t.Errorf("CompleteMultipart size = %d, want %d", info.Size, len(first)+len(second))
	}
	st, err := h.Blobs.Stat(ctx, key)
	must(t, err)
	if st.Size != info.Size {
		t.Errorf("Stat after complete = %+v, want size %d", st, info.Size)
	}
	if got := get(t, h, key); !bytes.Equal(got, append(append([]byte{}, first...), second...)) {
		t.Errorf("object after complete is %d bytes and differs from the parts joined", len(got))
	}
}

func testMultipartRules(t *testing.T, h Harness) {
	ctx := context.Background()
	key := "datasets/alice/rules.jsonl"
	id, err := h.Blobs.CreateMultipart(ctx, key)
	must(t, err)
	parts := uploadParts(t, h, key, id, [][]byte{content(1000), content(1000)})
	if _, err := h.Blobs.CompleteMultipart(ctx, key, id, parts); err == nil {
		t.Error("CompleteMultipart with a 1000-byte first part succeeded, want a too-small error")
	}
	bad := []pipeline.CompletedPart{{Number: 1, ETag: `"00000000000000000000000000000000"`}}
	if _, err := h.Blobs.CompleteMultipart(ctx, key, id, bad); err == nil {
		t.Error("CompleteMultipart with a wrong ETag succeeded, want an error")
	}
	wantNotFound(t, h, key)
	must(t, h.Blobs.AbortMultipart(ctx, key, id))
	if _, err := h.Blobs.CompleteMultipart(ctx, key, id, parts[:1]); err == nil {
		t.Error("CompleteMultipart after abort succeeded, want an error")
	}
	wantNotFound(t, h, key)
}

func testDelete(t *testing.T, h Harness) {
	ctx := context.Background()
	req, err := h.Blobs.PresignPut(ctx, "datasets/alice/d.jsonl", 5, "", time.Minute)
	must(t, err)
	if status, _ := do(t, h, req, content(5)); status != http.StatusOK {
		t.Fatalf("PUT = %d, want 200", status)
	}
	must(t, h.Blobs.Delete(ctx, "datasets/alice/d.jsonl"))
	wantNotFound(t, h, "datasets/alice/d.jsonl")
	must(t, h.Blobs.Delete(ctx, "datasets/alice/d.jsonl"))
}

func testDownload(t *testing.T, h Harness) {
	ctx := context.Background()
	key := "adapters/61/job_1/attempt-1/adapter_config.json"
	req, err := h.Blobs.PresignPut(ctx, key, 7, "", time.Minute)
	must(t, err)
	if status, _ := do(t, h, req, content(7)); status != http.StatusOK {
		t.Fatalf("PUT = %d, want 200", status)
	}
	dl, err := h.Blobs.PresignDownload(ctx, key, "adapter_config.json", time.Minute)
	must(t, err)
	resp, err := h.Client.Get(dl.URL)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if cd := resp.Header.Get("Content-Disposition"); resp.StatusCode != 200 || len(body) != 7 || cd != `attachment; filename="adapter_config.json"` {
		t.Errorf("download = %d, %d bytes, Content-Disposition %q; want 200, 7 bytes, attachment naming the file", resp.StatusCode, len(body), cd)
	}
	if _, err := h.Blobs.PresignDownload(ctx, key, `a"; filename="evil.exe`, time.Minute); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("a download name with quotes = %v, want invalid", err)
	}
}

func testListKeys(t *testing.T, h Harness) {
	ctx := context.Background()
	for _, key := range []string{"checkpoints/61/job_1/attempt-1/step-00000010/a.json", "checkpoints/61/job_1/attempt-2/step-00000020/b.bin",
		"checkpoints/61/job_10/attempt-1/step-00000010/a.json", "checkpoints/62/job_1/attempt-1/step-00000010/a.json"} {
		req, err := h.Blobs.PresignPut(ctx, key, 3, "", time.Minute)
		must(t, err)
		if status, _ := do(t, h, req, content(3)); status != http.StatusOK {
			t.Fatalf("PUT %s = %d, want 200", key, status)
		}
	}
	got, err := h.Blobs.ListKeys(ctx, "checkpoints/61/job_1/")
	must(t, err)
	want := "[checkpoints/61/job_1/attempt-1/step-00000010/a.json checkpoints/61/job_1/attempt-2/step-00000020/b.bin]"
	if fmt.Sprint(got) != want {
		t.Errorf("ListKeys(checkpoints/61/job_1/) = %v, want %s (not job_10's, not another owner's)", got, want)
	}
	if got, err := h.Blobs.ListKeys(ctx, "checkpoints/61/job_2/"); err != nil || len(got) != 0 {
		t.Errorf("ListKeys of an empty folder = %v, %v; want none", got, err)
	}
	if _, err := h.Blobs.ListKeys(ctx, "checkpoints/61/job_1"); pipeline.ErrorCode(err) != pipeline.EInvalid {
		t.Errorf("ListKeys without the trailing '/' = %v, want invalid (it would match job_10's too)", err)
	}
}

func testCreateOnce(t *testing.T, h Harness) {
	ctx := context.Background()
	first, second := content(500), content(500)
	second[0] = 'Z'
	req, err := h.Blobs.PresignCreate(ctx, "datasets/alice/once.jsonl", 500, "", time.Minute)
	must(t, err)
	if req.Headers[pipeline.CreateOnlyHeader] != "*" {
		t.Errorf("PresignCreate headers = %v, want %s: * for the client to send", req.Headers, pipeline.CreateOnlyHeader)
	}
	if status, _ := do(t, h, req, first); status != http.StatusOK {
		t.Fatalf("first PUT = %d, want 200", status)
	}
	for name, body := range map[string][]byte{"the same content": first, "other content": second} {
		if status, _ := do(t, h, req, body); status != http.StatusPreconditionFailed {
			t.Errorf("second PUT of %s with the create URL = %d, want 412", name, status)
		}
	}
	again, err := h.Blobs.PresignCreate(ctx, "datasets/alice/once.jsonl", 500, "", time.Minute)
	must(t, err)
	if status, _ := do(t, h, again, second); status != http.StatusPreconditionFailed {
		t.Errorf("PUT with a new create URL for a key that holds an object = %d, want 412", status)
	}
	if got := get(t, h, "datasets/alice/once.jsonl"); !bytes.Equal(got, first) {
		t.Errorf("after the refused PUTs the object holds %q..., want the first upload", got[:8])
	}
}
