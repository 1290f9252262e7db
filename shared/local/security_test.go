package local_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/local"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// The presigned URL sweep of the local blobs: tampered, expired, reused
// for another object, method, part or upload, and path traversal. Every
// refused request must leave the disk as it was; nothing is ever written
// outside the blob folder. Run with -v for the table of checks.

type sweepClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *sweepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *sweepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type blobSweep struct {
	t     *testing.T
	root  string // holds the blob folder and nothing else
	b     *local.Blobs
	srv   *httptest.Server
	clock *sweepClock
	rows  [][2]string
}

func newBlobSweep(t *testing.T) *blobSweep {
	t.Helper()
	root := t.TempDir()
	clock := &sweepClock{now: time.Now()}
	b, err := local.NewBlobs(local.BlobsOptions{Dir: filepath.Join(root, "blobs"), Secret: bytes.Repeat([]byte("s"), 32), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	b.SetBaseURL(srv.URL)
	return &blobSweep{t: t, root: root, b: b, srv: srv, clock: clock}
}

// files lists every file under the root with its size.
func (s *blobSweep) files(t *testing.T) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, path)
		out = append(out, fmt.Sprintf("%s (%d)", filepath.ToSlash(rel), info.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// send makes a request to a URL (kept exactly as given) with body; a
// negative length sends the body chunked.
func (s *blobSweep) send(t *testing.T, method, rawURL string, body []byte, length int64) int {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	req.ContentLength = length
	if length < 0 {
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if body == nil {
		req.Body = nil
		req.ContentLength = 0
	}
	resp, err := s.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// refused runs one check: every request it makes must be refused with
// one of the statuses, and the disk must be left as it was.
func (s *blobSweep) refused(name string, f func(t *testing.T, expect func(what string, status int, want ...int)) int) {
	s.t.Helper()
	result := ""
	ok := s.t.Run(name, func(t *testing.T) {
		before := s.files(t)
		seen := map[int]int{}
		expect := func(what string, status int, want ...int) {
			t.Helper()
			seen[status]++
			for _, w := range want {
				if status == w {
					return
				}
			}
			t.Errorf("%s = %d, want %v", what, status, want)
		}
		n := f(t, expect)
		if after := s.files(t); after != before {
			t.Errorf("refused requests changed the disk:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		var parts []string
		for status, c := range seen {
			parts = append(parts, fmt.Sprintf("%d ×%d", status, c))
		}
		sort.Strings(parts)
		result = fmt.Sprintf("%s of %d, disk unchanged", strings.Join(parts, ", "), n)
	})
	if !ok {
		result = "FAIL"
	}
	s.rows = append(s.rows, [2]string{name, result})
}

func (s *blobSweep) log() {
	var b strings.Builder
	width := 0
	for _, r := range s.rows {
		width = max(width, len(r[0]))
	}
	fmt.Fprintf(&b, "presigned URL sweep:\n%-*s  %s\n", width, "check", "result")
	for _, r := range s.rows {
		fmt.Fprintf(&b, "%-*s  %s\n", width, r[0], r[1])
	}
	s.t.Log(b.String())
}

// withQuery returns rawURL with its query changed by f.
func withQuery(t *testing.T, rawURL string, f func(q url.Values)) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	f(q)
	u.RawQuery = q.Encode()
	return u.String()
}

// withKey returns rawURL pointing at another key, the signature kept.
func withKey(t *testing.T, rawURL, key string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Host + local.BlobsPath + key + "?" + u.RawQuery
}

// tamper returns another value of a query parameter.
func tamper(v string) string {
	if v == "" {
		return "x"
	}
	last := v[len(v)-1]
	switch {
	case last >= '0' && last <= '8', last >= 'a' && last <= 'e':
		return v[:len(v)-1] + string(last+1)
	}
	return v[:len(v)-1] + "0"
}

func TestPresignedURLSweep(t *testing.T) {
	s := newBlobSweep(t)
	defer s.log()
	ctx := context.Background()
	content := []byte("0123456789")
	sum := sha256.Sum256(content)
	sha := hex.EncodeToString(sum[:])
	const key = "datasets/616c696365/ds_1.jsonl"
	put, err := s.b.PresignPut(ctx, key, int64(len(content)), sha, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.b.Put(ctx, "datasets/626f62/ds_2.jsonl", bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	getOther, err := s.b.PresignGet(ctx, "datasets/626f62/ds_2.jsonl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(len(content))

	s.refused("a PUT URL with any query parameter changed or removed", func(t *testing.T, expect func(string, int, ...int)) int {
		u, _ := url.Parse(put.URL)
		count := 0
		for name := range u.Query() {
			changed := withQuery(t, put.URL, func(q url.Values) { q.Set(name, tamper(q.Get(name))) })
			expect("PUT with "+name+" changed", s.send(t, "PUT", changed, content, n), 403)
			removed := withQuery(t, put.URL, func(q url.Values) { q.Del(name) })
			expect("PUT without "+name, s.send(t, "PUT", removed, content, n), 403)
			count += 2
		}
		for _, name := range []string{"upload", "part"} {
			added := withQuery(t, put.URL, func(q url.Values) { q.Set(name, "1") })
			expect("PUT with "+name+" added", s.send(t, "PUT", added, content, n), 403)
			count++
		}
		// A repeated parameter does not override the signed (first) value.
		doubled := put.URL + "&size=1&sha256=&expires=99999999999"
		expect("PUT of 1 byte with size=1 repeated", s.send(t, "PUT", doubled, content[:1], 1), 403)
		return count + 1
	})

	s.refused("a PUT URL reused for another key", func(t *testing.T, expect func(string, int, ...int)) int {
		others := []string{"datasets/626f62/ds_1.jsonl", "datasets/616c696365/ds_2.jsonl", "datasets/616c696365/ds_1.jsonl/x",
			"Datasets/616c696365/ds_1.jsonl", "datasets/616C696365/ds_1.jsonl", "adapters/616c696365/ds_1.jsonl", "datasets/616c696365/ds_1.jsonl.report.json"}
		for _, other := range others {
			expect("PUT to "+other, s.send(t, "PUT", withKey(t, put.URL, other), content, n), 403)
		}
		return len(others)
	})

	s.refused("an unsized PUT URL (an artifact's) with a size added or for another attempt", func(t *testing.T, expect func(string, int, ...int)) int {
		open, err := s.b.PresignPut(ctx, "adapters/616c696365/job_1/attempt-2/adapter_config.json", -1, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		sized := withQuery(t, open.URL, func(q url.Values) { q.Set("size", "10") })
		expect("PUT with a size added", s.send(t, "PUT", sized, content, n), 403)
		for _, other := range []string{"adapters/616c696365/job_1/attempt-1/adapter_config.json", "adapters/616c696365/job_2/attempt-2/adapter_config.json",
			"adapters/626f62/job_1/attempt-2/adapter_config.json", "datasets/616c696365/ds_1.jsonl"} {
			expect("PUT to "+other, s.send(t, "PUT", withKey(t, open.URL, other), content, n), 403)
		}
		return 5
	})

	s.refused("a PUT URL with another size or content", func(t *testing.T, expect func(string, int, ...int)) int {
		expect("PUT of 9 bytes", s.send(t, "PUT", put.URL, content[:9], 9), 403)
		expect("PUT of 11 bytes", s.send(t, "PUT", put.URL, append(content, 'x'), 11), 403)
		expect("PUT chunked", s.send(t, "PUT", put.URL, content, -1), 403)
		expect("PUT of other content", s.send(t, "PUT", put.URL, []byte("9876543210"), n), 400)
		return 4
	})

	s.refused("a URL used with another method", func(t *testing.T, expect func(string, int, ...int)) int {
		for _, m := range []string{"GET", "HEAD", "POST", "DELETE", "PATCH"} {
			expect(m+" with a PUT URL", s.send(t, m, put.URL, nil, 0), 403)
		}
		for _, m := range []string{"PUT", "POST", "DELETE"} {
			expect(m+" with a GET URL", s.send(t, m, getOther.URL, content, n), 403)
		}
		return 8
	})

	s.refused("an expired URL", func(t *testing.T, expect func(string, int, ...int)) int {
		short, err := s.b.PresignPut(ctx, key, n, sha, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		shortGet, err := s.b.PresignGet(ctx, "datasets/626f62/ds_2.jsonl", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		s.clock.add(2 * time.Minute)
		defer s.clock.add(-2 * time.Minute)
		expect("PUT after expiry", s.send(t, "PUT", short.URL, content, n), 403)
		expect("GET after expiry", s.send(t, "GET", shortGet.URL, nil, 0), 403)
		later := withQuery(t, short.URL, func(q url.Values) { q.Set("expires", fmt.Sprint(s.clock.Now().Add(time.Hour).Unix())) })
		expect("PUT with expires moved on", s.send(t, "PUT", later, content, n), 403)
		return 3
	})

	s.refused("a URL signed with another secret", func(t *testing.T, expect func(string, int, ...int)) int {
		other, err := local.NewBlobs(local.BlobsOptions{Dir: t.TempDir(), BaseURL: s.srv.URL, Secret: bytes.Repeat([]byte("o"), 32)})
		if err != nil {
			t.Fatal(err)
		}
		req, err := other.PresignPut(ctx, key, n, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		expect("PUT with another secret's URL", s.send(t, "PUT", req.URL, content, n), 403)
		return 1
	})

	// Multipart: two uploads, one to the key and one to another key.
	upload, err := s.b.CreateMultipart(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	otherUpload, err := s.b.CreateMultipart(ctx, "datasets/626f62/ds_3.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	part1, err := s.b.PresignPart(ctx, key, upload, 1, n, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.refused("a part URL used for another part, upload or operation", func(t *testing.T, expect func(string, int, ...int)) int {
		cases := map[string]string{
			"part 2":                 withQuery(t, part1.URL, func(q url.Values) { q.Set("part", "2") }),
			"part 0":                 withQuery(t, part1.URL, func(q url.Values) { q.Set("part", "0") }),
			"part ../../x":           withQuery(t, part1.URL, func(q url.Values) { q.Set("part", "../../x") }),
			"another upload id":      withQuery(t, part1.URL, func(q url.Values) { q.Set("upload", otherUpload) }),
			"an upload id ../..":     withQuery(t, part1.URL, func(q url.Values) { q.Set("upload", "../../objects") }),
			"a single PUT":           withQuery(t, part1.URL, func(q url.Values) { q.Set("op", "put"); q.Del("upload"); q.Del("part") }),
			"the other upload's key": withKey(t, part1.URL, "datasets/626f62/ds_3.jsonl"),
		}
		for name, u := range cases {
			expect("PUT of "+name, s.send(t, "PUT", u, content, n), 403)
		}
		return len(cases)
	})

	if err := s.b.AbortMultipart(ctx, key, upload); err != nil {
		t.Fatal(err)
	}
	s.refused("a part URL of an aborted upload", func(t *testing.T, expect func(string, int, ...int)) int {
		expect("PUT of part 1 after abort", s.send(t, "PUT", part1.URL, content, n), 404)
		return 1
	})

	s.refused("path traversal in keys", func(t *testing.T, expect func(string, int, ...int)) int {
		u, _ := url.Parse(put.URL)
		base := u.Scheme + "://" + u.Host
		keys := []string{"../escaped", "../../escaped", "datasets/../../escaped", "%2e%2e/escaped", "%2e%2e%2fescaped", "..%2f..%2fescaped",
			"datasets/%2e%2e/%2e%2e/escaped", `..\escaped`, `datasets\..\..\escaped`, "./escaped", "datasets//escaped", "/escaped",
			"datasets/x%00", "datasets/%C0%AE%C0%AE/escaped"}
		for _, k := range keys {
			for _, m := range []string{"PUT", "GET"} {
				expect(m+" "+k, s.send(t, m, base+local.BlobsPath+k+"?"+u.RawQuery, content, n), 400, 403)
			}
		}
		for _, k := range []string{"../escaped", "a/../../escaped", "a/./b", "a//b", `a\b`, "a\x00b", ""} {
			if _, err := s.b.PresignPut(ctx, k, n, "", time.Hour); pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("PresignPut(%q) = %v, want invalid", k, err)
			}
			if _, err := s.b.Put(ctx, k, bytes.NewReader(content), n); pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("Put(%q) = %v, want invalid", k, err)
			}
			if _, err := s.b.CreateMultipart(ctx, k); pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("CreateMultipart(%q) = %v, want invalid", k, err)
			}
		}
		if _, err := os.Stat(filepath.Join(s.root, "escaped")); err == nil {
			t.Errorf("a file was written outside the blob folder")
		}
		return 2 * len(keys)
	})

	t.Run("the untampered URL still works, and only inside the blob folder", func(t *testing.T) {
		if status := s.send(t, "PUT", put.URL, content, n); status != 200 {
			t.Fatalf("the untampered PUT = %d, want 200", status)
		}
		for _, f := range strings.Split(s.files(t), "\n") {
			if !strings.HasPrefix(f, "blobs/") {
				t.Errorf("file %s outside the blob folder", f)
			}
		}
		s.rows = append(s.rows, [2]string{"the untampered URL (control)", "200, stored under the blob folder"})
	})
}
