// Package s3blob is pipeline.Blobs (and pipeline.ObjectWriter) over one S3
// bucket, with presigned URLs for client uploads and downloads.
//
// A presigned PUT signs Content-Length, so S3 refuses a body of another
// size; given a sha256 it also signs x-amz-checksum-sha256, so S3 refuses
// other content (BadDigest). The headers a client must send with a
// presigned request are in SignedRequest.Headers.
package s3blob

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/brightrun/brightrun/shared/contract"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Options configure Blobs.
type Options struct {
	// Bucket is the bucket's name (suggested setting: BRIGHTRUN_BUCKET).
	Bucket string
}

// Blobs is pipeline.Blobs over S3.
type Blobs struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	now     func() time.Time
}

var (
	_ pipeline.Blobs        = (*Blobs)(nil)
	_ pipeline.ObjectWriter = (*Blobs)(nil)
)

// New returns blobs in opts.Bucket. Presigned requests carry only the
// checksums the caller asks for, whatever the client's
// RequestChecksumCalculation: a checksum the SDK computed at presign time
// would be of an empty body, and S3 would refuse every upload.
func New(client *s3.Client, opts Options) (*Blobs, error) {
	if client == nil {
		return nil, errors.New("s3blob: no client")
	}
	if opts.Bucket == "" {
		return nil, errors.New("s3blob: no bucket")
	}
	presign := s3.NewPresignClient(client, s3.WithPresignClientFromClientOptions(func(o *s3.Options) {
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	}))
	return &Blobs{client: client, presign: presign, bucket: opts.Bucket, now: time.Now}, nil
}

// Limits of S3 and of this adapter.
const (
	// MaxPutSize is the largest single PUT (and part) S3 accepts.
	MaxPutSize = 5 << 30
	// MaxURLLifetime is the longest a presigned URL may live (SigV4's limit).
	MaxURLLifetime = 7 * 24 * time.Hour
	maxKeyBytes    = 1024
	maxParts       = 10000
)

func checkKey(key string) error {
	if key == "" || len(key) > maxKeyBytes || !utf8.ValidString(key) {
		return pipeline.Errorf(pipeline.EInvalid, "object key must be 1..%d bytes of UTF-8", maxKeyBytes)
	}
	return nil
}

func checkTTL(ttl time.Duration) error {
	if ttl < time.Second || ttl > MaxURLLifetime {
		return pipeline.Errorf(pipeline.EInvalid, "URL lifetime must be between 1s and 7 days, got %s", ttl)
	}
	return nil
}

func checkSize(size int64) error {
	if size < 1 || size > MaxPutSize {
		return pipeline.Errorf(pipeline.EInvalid, "size must be between 1 byte and %d bytes, got %d", int64(MaxPutSize), size)
	}
	return nil
}

// signed turns a presigned request into the port's form. The Host header is
// left out (it comes from the URL); every other signed header is one the
// client must send as given.
func signed(req *v4.PresignedHTTPRequest, expires time.Time) pipeline.SignedRequest {
	if at, ok := urlExpiry(req.URL); ok {
		expires = at
	}
	out := pipeline.SignedRequest{Method: req.Method, URL: req.URL, ExpiresAt: expires}
	for k, vs := range req.SignedHeader {
		if strings.EqualFold(k, "Host") || len(vs) == 0 {
			continue
		}
		if out.Headers == nil {
			out.Headers = map[string]string{}
		}
		out.Headers[http.CanonicalHeaderKey(k)] = strings.Join(vs, ",")
	}
	return out
}

// expiry presigns with lifetime ttl (whole seconds); it returns the option
// and about when the URL expires, for when the URL does not say.
func (b *Blobs) expiry(ttl time.Duration) (func(*s3.PresignOptions), time.Time) {
	ttl = ttl.Truncate(time.Second)
	return s3.WithPresignExpires(ttl), b.now().Truncate(time.Second).Add(ttl)
}

// urlExpiry reads when a SigV4 presigned URL expires: X-Amz-Date plus
// X-Amz-Expires seconds.
func urlExpiry(raw string) (time.Time, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return time.Time{}, false
	}
	q := u.Query()
	at, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	if err != nil {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(q.Get("X-Amz-Expires"), 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return at.Add(time.Duration(secs) * time.Second), true
}

// PresignPut returns a PUT URL for exactly size bytes, and, when sha256Hex
// is given, exactly that content (x-amz-checksum-sha256 is signed: S3
// answers BadDigest to other content). A negative size leaves the size open
// (up to S3's 5 GiB), for files whose size is not known in advance, such as
// a trained adapter.
func (b *Blobs) PresignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (pipeline.SignedRequest, error) {
	return b.presignPut(ctx, key, size, sha256Hex, ttl, false)
}

func (b *Blobs) presignPut(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration, createOnly bool) (pipeline.SignedRequest, error) {
	if err := checkKey(key); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return pipeline.SignedRequest{}, err
	}
	in := &s3.PutObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}
	if createOnly {
		in.IfNoneMatch = aws.String("*")
	}
	if size >= 0 {
		if err := checkSize(size); err != nil {
			return pipeline.SignedRequest{}, err
		}
		in.ContentLength = aws.Int64(size)
	}
	if sha256Hex != "" {
		sum, err := hex.DecodeString(sha256Hex)
		if err != nil || len(sum) != 32 {
			return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "sha256 must be 64 hex digits, got %q", sha256Hex)
		}
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sum))
	}
	opt, exp := b.expiry(ttl)
	req, err := b.presign.PresignPutObject(ctx, in, opt)
	if err != nil {
		return pipeline.SignedRequest{}, fmt.Errorf("presign PUT %s: %w", key, err)
	}
	return signed(req, exp), nil
}

// PresignCreate is PresignPut for a key that holds no object yet: it signs
// If-None-Match: * (S3's conditional write), so S3 refuses a PUT to a key
// that holds an object with 412 PreconditionFailed, and the URL writes
// once.
func (b *Blobs) PresignCreate(ctx context.Context, key string, size int64, sha256Hex string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if size < 0 {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "a create-only upload needs its size")
	}
	return b.presignPut(ctx, key, size, sha256Hex, ttl, true)
}

// PresignGet returns a GET URL for the object.
func (b *Blobs) PresignGet(ctx context.Context, key string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if err := checkKey(key); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return pipeline.SignedRequest{}, err
	}
	opt, exp := b.expiry(ttl)
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}, opt)
	if err != nil {
		return pipeline.SignedRequest{}, fmt.Errorf("presign GET %s: %w", key, err)
	}
	return signed(req, exp), nil
}

// PresignDownload is PresignGet for a browser: S3 answers with
// Content-Disposition: attachment naming the file, so it is saved, not
// opened.
func (b *Blobs) PresignDownload(ctx context.Context, key, filename string, ttl time.Duration) (pipeline.SignedRequest, error) {
	if err := checkKey(key); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if !contract.ValidFileName(filename) {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "download name %q: letters, digits, '.', '_' or '-' only", filename)
	}
	if err := checkTTL(ttl); err != nil {
		return pipeline.SignedRequest{}, err
	}
	opt, exp := b.expiry(ttl)
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key),
		ResponseContentDisposition: aws.String(`attachment; filename="` + filename + `"`)}, opt)
	if err != nil {
		return pipeline.SignedRequest{}, fmt.Errorf("presign GET %s: %w", key, err)
	}
	return signed(req, exp), nil
}

// CreateMultipart starts a multipart upload to key.
func (b *Blobs) CreateMultipart(ctx context.Context, key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	out, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return "", translate(err, "create multipart upload", key)
	}
	return aws.ToString(out.UploadId), nil
}

// PresignPart returns a PUT URL for part number part (1..10000) of exactly
// size bytes.
func (b *Blobs) PresignPart(ctx context.Context, key, uploadID string, part int, size int64, ttl time.Duration) (pipeline.SignedRequest, error) {
	if err := checkKey(key); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if uploadID == "" {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "an upload id is required")
	}
	if part < 1 || part > maxParts {
		return pipeline.SignedRequest{}, pipeline.Errorf(pipeline.EInvalid, "part number must be 1..%d, got %d", maxParts, part)
	}
	if err := checkSize(size); err != nil {
		return pipeline.SignedRequest{}, err
	}
	if err := checkTTL(ttl); err != nil {
		return pipeline.SignedRequest{}, err
	}
	opt, exp := b.expiry(ttl)
	req, err := b.presign.PresignUploadPart(ctx, &s3.UploadPartInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
		PartNumber: aws.Int32(int32(part)), ContentLength: aws.Int64(size),
	}, opt)
	if err != nil {
		return pipeline.SignedRequest{}, fmt.Errorf("presign part %d of %s: %w", part, key, err)
	}
	return signed(req, exp), nil
}

// CompleteMultipart joins the parts, in part-number order, into the object.
// S3's rules apply: every part but the last at least 5 MiB (EntityTooSmall),
// ETags as uploaded (InvalidPart); both are EInvalid.
func (b *Blobs) CompleteMultipart(ctx context.Context, key, uploadID string, parts []pipeline.CompletedPart) (pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if uploadID == "" {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "an upload id is required")
	}
	if len(parts) == 0 || len(parts) > maxParts {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "a multipart upload needs 1..%d parts, got %d", maxParts, len(parts))
	}
	sorted := append([]pipeline.CompletedPart(nil), parts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Number < sorted[j].Number })
	list := make([]types.CompletedPart, 0, len(sorted))
	for i, p := range sorted {
		if p.Number < 1 || p.Number > maxParts || p.ETag == "" {
			return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "part %d: needs a number in 1..%d and an ETag", p.Number, maxParts)
		}
		if i > 0 && sorted[i-1].Number == p.Number {
			return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "part %d is listed twice", p.Number)
		}
		list = append(list, types.CompletedPart{PartNumber: aws.Int32(int32(p.Number)), ETag: aws.String(quote(p.ETag))})
	}
	_, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), UploadId: aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: list},
	})
	if err != nil {
		return pipeline.ObjectInfo{}, translate(err, "complete multipart upload", key)
	}
	return b.Stat(ctx, key)
}

// AbortMultipart discards an upload and its parts.
func (b *Blobs) AbortMultipart(ctx context.Context, key, uploadID string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if uploadID == "" {
		return pipeline.Errorf(pipeline.EInvalid, "an upload id is required")
	}
	_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(b.bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
	return translate(err, "abort multipart upload", key)
}

// Stat describes the object.
func (b *Blobs) Stat(ctx context.Context, key string) (pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return pipeline.ObjectInfo{}, translate(err, "stat", key)
	}
	return pipeline.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag))}, nil
}

// Open streams the object; the caller closes the reader.
func (b *Blobs) Open(ctx context.Context, key string) (io.ReadCloser, pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return nil, pipeline.ObjectInfo{}, err
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, pipeline.ObjectInfo{}, translate(err, "open", key)
	}
	return out.Body, pipeline.ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: unquote(aws.ToString(out.ETag))}, nil
}

// ListKeys returns the keys of every object under prefix, in key order.
func (b *Blobs) ListKeys(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" || !strings.HasSuffix(prefix, "/") {
		return nil, pipeline.Errorf(pipeline.EInvalid, "list a folder: the prefix must end with '/', got %q", prefix)
	}
	var keys []string
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: aws.String(b.bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, translate(err, "list", prefix)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// Delete removes the object; deleting a missing object succeeds, as in S3.
func (b *Blobs) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	return translate(err, "delete", key)
}

// Put stores body, exactly size bytes, at key. A body that is not an
// io.ReadSeeker is sent with an unsigned payload (the signature covers the
// headers; TLS covers the body).
func (b *Blobs) Put(ctx context.Context, key string, body io.Reader, size int64) (pipeline.ObjectInfo, error) {
	if err := checkKey(key); err != nil {
		return pipeline.ObjectInfo{}, err
	}
	if size < 0 || size > MaxPutSize {
		return pipeline.ObjectInfo{}, pipeline.Errorf(pipeline.EInvalid, "size must be between 0 and %d bytes, got %d", int64(MaxPutSize), size)
	}
	var opts []func(*s3.Options)
	if _, ok := body.(io.ReadSeeker); !ok {
		opts = append(opts, s3.WithAPIOptions(v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware))
	}
	out, err := b.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(b.bucket), Key: aws.String(key), Body: body, ContentLength: aws.Int64(size),
	}, opts...)
	if err != nil {
		return pipeline.ObjectInfo{}, translate(err, "put", key)
	}
	return pipeline.ObjectInfo{Key: key, Size: size, ETag: unquote(aws.ToString(out.ETag))}, nil
}

func unquote(etag string) string { return strings.Trim(etag, `"`) }
func quote(etag string) string   { return `"` + unquote(etag) + `"` }

// translate turns an S3 error into the domain's; nil stays nil.
func translate(err error, what, key string) error {
	if err == nil {
		return nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch code := apiErr.ErrorCode(); code {
		case "NoSuchKey", "NotFound":
			return pipeline.Errorf(pipeline.ENotFound, "object %q not found", key)
		case "NoSuchUpload":
			return pipeline.Errorf(pipeline.ENotFound, "multipart upload for %q not found (aborted, completed or never started)", key)
		case "EntityTooSmall":
			return pipeline.Errorf(pipeline.EInvalid, "%s %q: every part but the last must be at least %d bytes", what, key, pipeline.MinPartSize)
		case "InvalidPart":
			return pipeline.Errorf(pipeline.EInvalid, "%s %q: a part was not uploaded or its ETag does not match", what, key)
		case "InvalidPartOrder", "MalformedXML", "InvalidArgument", "BadDigest", "InvalidDigest", "IncompleteBody":
			return pipeline.Errorf(pipeline.EInvalid, "%s %q: %s", what, key, apiErr.ErrorMessage())
		case "PreconditionFailed", "ConditionalRequestConflict":
			return pipeline.Errorf(pipeline.EConflict, "%s %q: the object exists", what, key)
		case "EntityTooLarge":
			return pipeline.Errorf(pipeline.ETooLarge, "%s %q: the object is over S3's size limit", what, key)
		case "SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout":
			return &pipeline.Error{Code: pipeline.EUnavailable, Message: "the object store is busy: try again", Details: map[string]string{"aws_error": code}}
		}
	}
	return fmt.Errorf("%s %q: %w", what, key, err)
}

// CreateBucket creates the bucket if it does not exist. It is for tests
// and the local stack; the deployed bucket comes from the SAM template.
func CreateBucket(ctx context.Context, client *s3.Client, name string) error {
	_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("create bucket %s: %w", name, err)
	}
	return nil
}

// OpenAt opens the object for reads at any offset: each ReadAt is one
// ranged GetObject, conditional on the ETag the object had when opened,
// so that the reads never mix two versions of it (a read of a replaced
// object fails). The validator reads a dataset in parts this way, in
// parallel. Close releases nothing, and ReadAt uses ctx.
func (b *Blobs) OpenAt(ctx context.Context, key string) (interface {
	io.ReaderAt
	io.Closer
}, pipeline.ObjectInfo, error) {
	info, err := b.Stat(ctx, key)
	if err != nil {
		return nil, info, err
	}
	return &objectReaderAt{ctx: ctx, b: b, info: info}, info, nil
}

type objectReaderAt struct {
	ctx  context.Context
	b    *Blobs
	info pipeline.ObjectInfo
}

func (o *objectReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", o.info.Key, off)
	}
	if off >= o.info.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), o.info.Size)
	out, err := o.b.client.GetObject(o.ctx, &s3.GetObjectInput{Bucket: aws.String(o.b.bucket), Key: aws.String(o.info.Key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", off, end-1)), IfMatch: aws.String(quote(o.info.ETag))})
	if err != nil {
		return 0, translate(err, "read range of", o.info.Key)
	}
	defer out.Body.Close()
	n, err := io.ReadFull(out.Body, p[:end-off])
	if err != nil {
		return n, fmt.Errorf("read %s at %d: %w", o.info.Key, off, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (o *objectReaderAt) Close() error { return nil }
