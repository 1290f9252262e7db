package local

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// BlobsPath is where the local stack serves blob URLs.
const BlobsPath = "/blobs/"

// Blobs is pipeline.Blobs on the local disk. Presigned URLs point at the
// local stack's BlobsPath and carry an HMAC-SHA256 over the method, key,
// declared size and expiry, so they are bound to one object, one operation
// and one size, and expire. Blobs is also the http.Handler that serves them.
type Blobs struct {
	dir     string
	baseURL string
	keyMu   sync.RWMutex
	key     []byte
	expired [][]byte // keys of credentials that expired (ExpireCredentials)
	now     func() time.Time
	// OnCreated, when set, is called after an object is completely written
	// (single PUT or completed multipart upload), like an S3 event.
	OnCreated func(info pipeline.ObjectInfo)
}

var _ pipeline.Blobs = (*Blobs)(nil)

// BlobsOptions configure local blobs.
type BlobsOptions struct {
	// Dir holds the objects.
	Dir string
	// BaseURL is the scheme and host the presigned URLs point at, e.g.
	// "http://127.0.0.1:8080".
	BaseURL string
	// Secret signs the URLs. Keep it across restarts so URLs stay valid.
	Secret []byte
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// NewBlobs returns blobs kept under opts.Dir.
func NewBlobs(opts BlobsOptions) (*Blobs, error) {
	if len(opts.Secret) < 16 {
		return nil, errors.New("blob signing secret must be at least 16 bytes")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, sub := range []string{"objects", "meta", "uploads", "tmp"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create blob folder: %w", err)
		}
	}
	return &Blobs{dir: opts.Dir, baseURL: strings.TrimRight(opts.BaseURL, "/"), key: opts.Secret, now: opts.Now}, nil
}

// ExpireCredentials makes every URL signed until now unusable, whatever
// its expiry says, as S3 refuses URLs signed with a role's temporary
// credentials once they expire (400 ExpiredToken): a new signing key signs
// from now on. For tests of long jobs.
func (b *Blobs) ExpireCredentials() error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("new signing key: %w", err)
	}
	b.keyMu.Lock()
	defer b.keyMu.Unlock()
	b.expired = append(b.expired, b.key)
	b.key = key
	return nil
}

func (b *Blobs) signedByExpired(o op, sig string) bool {
	b.keyMu.RLock()
	defer b.keyMu.RUnlock()
	for _, k := range b.expired {
		if hmac.Equal([]byte(signWith(k, o)), []byte(sig)) {
			return true
		}
	}
	return false
}

// SetBaseURL changes where presigned URLs point (the local stack learns its
// address only once it listens).
func (b *Blobs) SetBaseURL(u string) { b.baseURL = strings.TrimRight(u, "/") }

// checkKey accepts keys of safe characters and no empty, "." or ".." segments.
func checkKey(key string) error {
	if key == "" || len(key) > 512 {
		return pipeline.Errorf(pipeline.EInvalid, "object key must be 1..512 bytes")
	}
	for _, r := range key {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./", r)) {
			return pipeline.Errorf(pipeline.EInvalid, "object key %q has a character outside [A-Za-z0-9-_./]", key)
		}
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return pipeline.Errorf(pipeline.EInvalid, "object key %q has an empty, . or .. segment", key)
		}
	}
	return nil
}

func (b *Blobs) objectPath(key string) string {
	return filepath.Join(b.dir, "objects", filepath.FromSlash(key))
}
func (b *Blobs) metaPath(key string) string {
	return filepath.Join(b.dir, "meta", filepath.FromSlash(key)+".json")
}

// signed operation parameters, in signing order.
type op struct {
	method, key, kind, upload, part, size, sha, expires string
	filename                                            string // a download's name (Content-Disposition: attachment)
}

func (b *Blobs) sign(o op) string {
	b.keyMu.RLock()
	key := b.key
	b.keyMu.RUnlock()
	return signWith(key, o)
}

func signWith(key []byte, o op) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\n%s\n%s\n%s\n%s\n%s\n%s\n%s", o.method, o.key, o.kind, o.upload, o.part, o.size, o.sha, o.expires)
	if o.filename != "" {
		fmt.Fprintf(m, "\n%s", o.filename)
	}
	return hex.EncodeToString(m.Sum(nil))
}

func (b *Blobs) presign(o op, ttl time.Duration) (pipeline.SignedRequest, error) {
	if err := checkKey(o.key); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if ttl <= 0 || ttl > 7*24*time.Hour {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "URL lifetime must be between 1s and 7 days, got %s", ttl)
	}
	exp := b.now().Add(ttl).Truncate(time.Second)
	o.expires = strconv.FormatInt(exp.Unix(), 10)
	q := url.Values{}
	q.Set("op", o.kind)
	if o.upload != "" {
		q.Set("upload", o.upload)
		q.Set("part", o.part)
	}
	if o.size != "" {
		q.Set("size", o.size)
	}
	if o.sha != "" {
		q.Set("sha256", o.sha)
	}
	if o.filename != "" {
		q.Set("filename", o.filename)
	}
	q.Set("expires", o.expires)
	q.Set("signature", b.sign(o))
	req := pipeline.SignedRequest{Method: o.method, URL: b.baseURL + BlobsPath + o.key + "?" + q.Encode(), ExpiresAt: exp}
	if o.size != "" {
		req.Headers = map[string]string{"Content-Length": o.size}
	}
	return req, nil
}

// PresignPut returns a PUT URL for exactly size bytes (and, when sha256Hex
// is given, exactly that content). A negative size leaves the size open (up
// to MaxUnboundedPut): for files whose size is not known in advance, such
// as a trained adapter.
func (b *Blobs) PresignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (pipeline.SignedRequest, error) {
	o := op{method: http.MethodPut, key: key, kind: "put", sha: strings.ToLower(sha256Hex)}
	if size >= 0 {
		o.size = strconv.FormatInt(size, 10)
	}
	return b.presign(o, ttl)
}

// PresignCreate is PresignPut for a key that holds no object yet: the URL
// writes once (a PUT to a key that holds an object is refused with 412
// PreconditionFailed and changes nothing).
func (b *Blobs) PresignCreate(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if size < 0 {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "a create-only upload needs its size")
	}
	o := op{method: http.MethodPut, key: key, kind: "create", size: strconv.FormatInt(size, 10), sha: strings.ToLower(sha256Hex)}
	req, err := b.presign(o, ttl)
	if err != nil {
		return req, err
	}
	req.Headers[pipeline.CreateOnlyHeader] = "*"
	return req, nil
}

// MaxUnboundedPut is the most a PUT URL presigned without a size accepts.
const MaxUnboundedPut = 32 << 30

// PresignGet returns a GET URL for the object.
func (b *Blobs) PresignGet(ctx context.Context, key string, ttl time.Duration) (pipeline.SignedRequest, error) {
	return b.presign(op{method: http.MethodGet, key: key, kind: "get"}, ttl)
}

// PresignDownload is PresignGet for a browser: the answer names the file
// (Content-Disposition: attachment), so it is saved, not opened.
func (b *Blobs) PresignDownload(ctx context.Context, key, filename string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if !contract.ValidFileName(filename) {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "download name %q: letters, digits, '.', '_' or '-' only", filename)
	}
	return b.presign(op{method: http.MethodGet, key: key, kind: "get", filename: filename}, ttl)
}

type uploadMeta struct {
	Key string `json:"key"`
}

func (b *Blobs) uploadDir(id string) (string, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", pipeline.Errorf(pipeline.ENotFound, "multipart upload %q not found", id)
	}
	return filepath.Join(b.dir, "uploads", id), nil
}

// CreateMultipart starts a multipart upload to key.
func (b *Blobs) CreateMultipart(ctx context.Context, key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	id := randomHex(16)
	dir, _ := b.uploadDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	data, _ := json.Marshal(uploadMeta{Key: key})
	if err := os.WriteFile(filepath.Join(dir, "upload.json"), data, 0o600); err != nil {
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	return id, nil
}

func (b *Blobs) openUpload(key, id string) (string, error) {
	dir, err := b.uploadDir(id)
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, "upload.json"))
	if err != nil {
		return "", pipeline.Errorf(pipeline.ENotFound, "multipart upload %q not found", id)
	}
	var m uploadMeta
	if err := json.Unmarshal(data, &m); err != nil || m.Key != key {
		return "", pipeline.Errorf(pipeline.ENotFound, "multipart upload %q not found for %q", id, key)
	}
	return dir, nil
}

// PresignPart returns a PUT URL for one part of exactly size bytes.
func (b *Blobs) PresignPart(ctx context.Context, key, uploadID string, part int, size int64, ttl time.Duration) (pipeline.SignedRequest, error) {
	if part < 1 || part > 10000 {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "part number must be 1..10000, got %d", part)
	}
	if _, err := b.openUpload(key, uploadID); err != nil {
		return pipeline.SignedRequest{}, err
	}
	return b.presign(op{method: http.MethodPut, key: key, kind: "part", upload: uploadID, part: strconv.Itoa(part), size: strconv.FormatInt(size, 10)}, ttl)
}

// CompleteMultipart joins the parts, in order, into the object.
func (b *Blobs) CompleteMultipart(ctx context.Context, key, uploadID string, parts []pipeline.CompletedPart) (pipeline.ObjectInfo, error) {
	dir, err := b.openUpload(key, uploadID)
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if len(parts) == 0 {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "a multipart upload needs at least one part")
	}
	sums := md5.New()
	var files []string
	for i, p := range parts {
		if i > 0 && p.Number <= parts[i-1].Number {
			return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "parts must be in ascending order of part number")
		}
		name := filepath.Join(dir, strconv.Itoa(p.Number))
		etag, err := os.ReadFile(name + ".etag")
		if err != nil {
			return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "part %d was not uploaded", p.Number)
		}
		if strings.Trim(p.ETag, `"`) != string(etag) {
			return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "part %d: ETag %s does not match the uploaded part", p.Number, p.ETag)
		}
		if i < len(parts)-1 {
			st, err := os.Stat(name)
			if err != nil {
				return pipeline.ObjectInfo{}, fmt.Errorf("stat part: %w", err)
			}
			if st.Size() < pipeline.MinPartSize {
				return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "part %d is %d bytes: every part but the last must be at least %d", p.Number, st.Size(), pipeline.MinPartSize)
			}
		}
		raw, _ := hex.DecodeString(string(etag))
		sums.Write(raw)
		files = append(files, name)
	}
	etag := fmt.Sprintf("%x-%d", sums.Sum(nil), len(parts))
	info, err := b.writeObject(key, func(w io.Writer) error {
		for _, f := range files {
			if err := copyFile(w, f); err != nil {
				return err
			}
		}
		return nil
	}, etag, false)
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		slog.Warn("remove finished multipart upload", "upload_id", uploadID, "err", err)
	}
	b.created(info)
	return info, nil
}

func copyFile(w io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// AbortMultipart discards a multipart upload and its parts.
func (b *Blobs) AbortMultipart(ctx context.Context, key, uploadID string) error {
	dir, err := b.openUpload(key, uploadID)
	if err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

type objectMeta struct {
	Size int64  `json:"size"`
	ETag string `json:"etag"`
}

// Stat describes the object at key.
func (b *Blobs) Stat(ctx context.Context, key string) (pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	data, err := os.ReadFile(b.metaPath(key))
	if errors.Is(err, fs.ErrNotExist) {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.ENotFound, "object %q not found", key)
	}
	if err != nil {
		return pipeline.ObjectInfo{}, fmt.Errorf("stat object: %w", err)
	}
	var m objectMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return pipeline.ObjectInfo{}, fmt.Errorf("decode object metadata of %q: %w", key, err)
	}
	return pipeline.ObjectInfo{Key: key, Size: m.Size, ETag: m.ETag}, nil
}

// Open streams the object at key.
func (b *Blobs) Open(ctx context.Context, key string) (io.ReadCloser, pipeline.ObjectInfo, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return nil, info, err
	}
	f, err := os.Open(b.objectPath(key))
	if err != nil {
		return nil, info, fmt.Errorf("open object: %w", err)
	}
	return f, info, nil
}

// ListKeys returns the keys of every object under prefix, in key order.
func (b *Blobs) ListKeys(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" || !strings.HasSuffix(prefix, "/") {
		return nil, pipeline.Errorf(pipeline.EInvalid, "list a folder: the prefix must end with '/', got %q", prefix)
	}
	if err := checkKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return nil, err
	}
	root := filepath.Join(b.dir, "objects")
	var keys []string
	err := filepath.WalkDir(b.objectPath(strings.TrimSuffix(prefix, "/")), func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object at key; a missing object is not an error.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := os.Remove(b.metaPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete object: %w", err)
	}
	if err := os.Remove(b.objectPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete object: %w", err)
	}
	return nil
}

// writeObject writes an object atomically: to a temporary file first, then
// moved into place, then its metadata. etag "" means the MD5 of the content.
// With createOnly the object must not exist: the move is a hard link,
// which fails (errExists) when another writer got there first.
func (b *Blobs) writeObject(key string, write func(io.Writer) error, etag string, createOnly bool) (pipeline.ObjectInfo, error) {
	if createOnly {
		if _, err := os.Stat(b.objectPath(key)); err == nil {
			return pipeline.ObjectInfo{}, errExists
		}
	}
	tmp, err := os.CreateTemp(filepath.Join(b.dir, "tmp"), "object-*")
	if err != nil {
		return pipeline.ObjectInfo{}, fmt.Errorf("write object: %w", err)
	}
	defer os.Remove(tmp.Name())
	sum := md5.New()
	cw := &countWriter{w: io.MultiWriter(tmp, sum)}
	err = write(cw)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if etag == "" {
		etag = hex.EncodeToString(sum.Sum(nil))
	}
	for _, p := range []string{b.objectPath(key), b.metaPath(key)} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return pipeline.ObjectInfo{}, fmt.Errorf("write object: %w", err)
		}
	}
	if createOnly {
		if err := os.Link(tmp.Name(), b.objectPath(key)); errors.Is(err, fs.ErrExist) {
			return pipeline.ObjectInfo{}, errExists
		} else if err != nil {
			return pipeline.ObjectInfo{}, fmt.Errorf("write object: %w", err)
		}
	} else if err := os.Rename(tmp.Name(), b.objectPath(key)); err != nil {
		return pipeline.ObjectInfo{}, fmt.Errorf("write object: %w", err)
	}
	meta, _ := json.Marshal(objectMeta{Size: cw.n, ETag: etag})
	if err := writeFileAtomic(b.metaPath(key), meta); err != nil {
		return pipeline.ObjectInfo{}, fmt.Errorf("write object metadata: %w", err)
	}
	return pipeline.ObjectInfo{Key: key, Size: cw.n, ETag: etag}, nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (b *Blobs) created(info pipeline.ObjectInfo) {
	if b.OnCreated != nil {
		b.OnCreated(info)
	}
}

// ServeHTTP serves presigned URLs under BlobsPath.
func (b *Blobs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, BlobsPath)
	q := r.URL.Query()
	o := op{method: r.Method, key: key, kind: q.Get("op"), upload: q.Get("upload"), part: q.Get("part"),
		size: q.Get("size"), sha: q.Get("sha256"), expires: q.Get("expires"), filename: q.Get("filename")}
	if r.Method == http.MethodHead {
		o.method = http.MethodGet // a GET URL also allows HEAD, as in S3
	}
	if err := checkKey(key); err != nil {
		blobError(w, http.StatusBadRequest, "InvalidKey", err.Error())
		return
	}
	if !hmac.Equal([]byte(b.sign(o)), []byte(q.Get("signature"))) {
		if b.signedByExpired(o, q.Get("signature")) {
			// As S3 answers a URL whose signing session token expired.
			blobError(w, http.StatusBadRequest, "ExpiredToken", "The provided token has expired.")
			return
		}
		blobError(w, http.StatusForbidden, "SignatureDoesNotMatch", "the URL's signature does not match: it was altered or is for another object or method")
		return
	}
	exp, err := strconv.ParseInt(o.expires, 10, 64)
	if err != nil || b.now().Unix() > exp {
		blobError(w, http.StatusForbidden, "AccessDenied", "the URL has expired")
		return
	}
	switch {
	case o.kind == "get" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		if o.filename != "" {
			w.Header().Set("Content-Disposition", `attachment; filename="`+o.filename+`"`)
		}
		b.serveGet(w, r, key)
	case (o.kind == "put" || o.kind == "create" || o.kind == "part") && r.Method == http.MethodPut:
		b.servePut(w, r, o)
	default:
		blobError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "this URL does not allow "+r.Method)
	}
}

func (b *Blobs) serveGet(w http.ResponseWriter, r *http.Request, key string) {
	f, info, err := b.Open(r.Context(), key)
	if err != nil {
		blobError(w, http.StatusNotFound, "NoSuchKey", "no such object")
		return
	}
	defer f.Close()
	w.Header().Set("ETag", `"`+info.ETag+`"`)
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", time.Time{}, f.(io.ReadSeeker))
}

func (b *Blobs) servePut(w http.ResponseWriter, r *http.Request, o op) {
	if o.size == "" {
		b.serveUnboundedPut(w, r, o)
		return
	}
	size, _ := strconv.ParseInt(o.size, 10, 64)
	if r.ContentLength != size {
		blobError(w, http.StatusForbidden, "SignatureDoesNotMatch",
			fmt.Sprintf("this URL accepts exactly %d bytes; the request declares %d", size, r.ContentLength))
		return
	}
	hash := sha256.New()
	write := func(dst io.Writer) error {
		n, err := io.Copy(io.MultiWriter(dst, hash), io.LimitReader(r.Body, size+1))
		if err != nil {
			return fmt.Errorf("read upload: %w", err)
		}
		if n != size {
			return errSizeMismatch
		}
		if o.sha != "" && hex.EncodeToString(hash.Sum(nil)) != o.sha {
			return errChecksumMismatch
		}
		return nil
	}
	var info pipeline.ObjectInfo
	var err error
	if o.kind == "part" {
		var dir string
		if dir, err = b.openUpload(o.key, o.upload); err == nil {
			info, err = writePart(filepath.Join(dir, o.part), write)
		}
	} else {
		info, err = b.writeObject(o.key, write, "", o.kind == "create")
	}
	switch {
	case errors.Is(err, errExists):
		blobError(w, http.StatusPreconditionFailed, "PreconditionFailed", "the object exists: this URL only creates it, once")
		return
	case errors.Is(err, errSizeMismatch):
		blobError(w, http.StatusBadRequest, "IncompleteBody", fmt.Sprintf("the body is not the %d bytes this URL accepts", size))
		return
	case errors.Is(err, errChecksumMismatch):
		blobError(w, http.StatusBadRequest, "BadDigest", "the body's SHA-256 does not match the one this URL was signed for")
		return
	case pipeline.ErrorCode(err) == pipeline.ENotFound:
		blobError(w, http.StatusNotFound, "NoSuchUpload", "no such multipart upload")
		return
	case err != nil:
		slog.Error("store upload", "key", o.key, "err", err)
		blobError(w, http.StatusInternalServerError, "InternalError", "could not store the upload")
		return
	}
	w.Header().Set("ETag", `"`+info.ETag+`"`)
	w.WriteHeader(http.StatusOK)
	if o.kind == "put" || o.kind == "create" {
		b.created(info)
	}
}

func (b *Blobs) serveUnboundedPut(w http.ResponseWriter, r *http.Request, o op) {
	if r.ContentLength > MaxUnboundedPut {
		blobError(w, http.StatusBadRequest, "EntityTooLarge", fmt.Sprintf("uploads are limited to %d bytes", int64(MaxUnboundedPut)))
		return
	}
	info, err := b.writeObject(o.key, func(dst io.Writer) error {
		n, err := io.Copy(dst, io.LimitReader(r.Body, MaxUnboundedPut+1))
		if err != nil {
			return fmt.Errorf("read upload: %w", err)
		}
		if n > MaxUnboundedPut || r.ContentLength >= 0 && n != r.ContentLength {
			return errSizeMismatch
		}
		return nil
	}, "", false)
	if errors.Is(err, errSizeMismatch) {
		blobError(w, http.StatusBadRequest, "IncompleteBody", "the body is not the size its Content-Length declares, or over the limit")
		return
	}
	if err != nil {
		slog.Error("store upload", "key", o.key, "err", err)
		blobError(w, http.StatusInternalServerError, "InternalError", "could not store the upload")
		return
	}
	w.Header().Set("ETag", `"`+info.ETag+`"`)
	w.WriteHeader(http.StatusOK)
}

var (
	errExists           = errors.New("the object exists")
	errSizeMismatch     = errors.New("body size differs from the signed size")
	errChecksumMismatch = errors.New("body sha256 differs from the signed one")
)

func writePart(path string, write func(io.Writer) error) (pipeline.ObjectInfo, error) {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	defer os.Remove(tmp)
	sum := md5.New()
	cw := &countWriter{w: io.MultiWriter(f, sum)}
	err = write(cw)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return pipeline.ObjectInfo{}, err
	}
	etag := hex.EncodeToString(sum.Sum(nil))
	if err := os.Rename(tmp, path); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if err := os.WriteFile(path+".etag", []byte(etag), 0o600); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	return pipeline.ObjectInfo{Size: cw.n, ETag: etag}, nil
}

// blobError answers in S3's XML error shape, so S3 clients read it.
func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>\n", code, xmlEscape(msg))
}

func xmlEscape(s string) string {
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
	return r.Replace(s)
}

// Put stores body (exactly size bytes) at key. It does not call OnCreated:
// like an S3 notification filtered to uploads, that is for client uploads.
func (b *Blobs) Put(ctx context.Context, key string, body io.Reader, size int64) (pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	return b.writeObject(key, func(w io.Writer) error {
		n, err := io.Copy(w, io.LimitReader(body, size+1))
		if err != nil {
			return fmt.Errorf("write %s: %w", key, err)
		}
		if n != size {
			return fmt.Errorf("write %s: body has %d bytes, want %d", key, n, size)
		}
		return nil
	}, "", false)
}

// OpenAt opens the object for reads at any offset (the validator reads
// a dataset in parts, in parallel); the caller closes it.
func (b *Blobs) OpenAt(ctx context.Context, key string) (interface {
	io.ReaderAt
	io.Closer
}, pipeline.ObjectInfo, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return nil, info, err
	}
	f, err := os.Open(b.objectPath(key))
	if err != nil {
		return nil, info, fmt.Errorf("open object: %w", err)
	}
	return f, info, nil
}
