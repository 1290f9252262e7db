package client

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/brightrun/brightrun/shared/pipeline"
)

// TransferError is a presigned upload or download the blob store refused,
// with its S3-style error code (AccessDenied, NoSuchUpload, BadDigest …).
type TransferError struct {
	Status  int
	Code    string
	Message string
	// Expired is set when the URL's lifetime had passed.
	Expired bool
}

func (e *TransferError) Error() string {
	if e.Expired {
		return "the presigned URL has expired"
	}
	return fmt.Sprintf("blob store answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Put sends body (exactly size bytes) to a presigned PUT URL with the
// headers it was signed with, and returns the ETag of what was stored.
// A URL past its ExpiresAt is not even tried.
func (cl *Client) Put(ctx context.Context, req pipeline.SignedRequest, body io.Reader, size int64) (string, error) {
	if Expired(req) {
		return "", &TransferError{Status: http.StatusForbidden, Code: "AccessDenied", Message: "the URL has expired", Expired: true}
	}
	method := req.Method
	if method == "" {
		method = http.MethodPut
	}
	hr, err := http.NewRequestWithContext(ctx, method, req.URL, body)
	if err != nil {
		return "", fmt.Errorf("presigned URL: %w", err)
	}
	hr.ContentLength = size
	if size == 0 {
		hr.Body = http.NoBody
	}
	for k, v := range req.Headers {
		if !strings.EqualFold(k, "Content-Length") {
			hr.Header.Set(k, v)
		}
	}
	resp, err := cl.transfer().Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", &UnreachableError{URL: hostOf(req.URL), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", decodeTransferError(resp)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Header.Get("ETag"), nil
}

// Get opens a presigned GET URL; the caller closes the body. The size is
// the Content-Length, -1 when unknown.
func (cl *Client) Get(ctx context.Context, req pipeline.SignedRequest) (io.ReadCloser, int64, error) {
	if Expired(req) {
		return nil, 0, &TransferError{Status: http.StatusForbidden, Code: "AccessDenied", Message: "the URL has expired", Expired: true}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	hr, err := http.NewRequestWithContext(ctx, method, req.URL, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("presigned URL: %w", err)
	}
	for k, v := range req.Headers {
		hr.Header.Set(k, v)
	}
	resp, err := cl.transfer().Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, &UnreachableError{URL: hostOf(req.URL), Err: err}
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, 0, decodeTransferError(resp)
	}
	return resp.Body, resp.ContentLength, nil
}

func (cl *Client) transfer() *http.Client {
	if cl.Transfer != nil {
		return cl.Transfer
	}
	return http.DefaultClient
}

// Expired reports whether req's lifetime has passed (with a few seconds'
// margin for the request to arrive).
func Expired(req pipeline.SignedRequest) bool {
	return !req.ExpiresAt.IsZero() && time.Now().Add(5*time.Second).After(req.ExpiresAt)
}

// hostOf returns scheme://host of a URL, so that errors do not print
// signatures.
func hostOf(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.IndexAny(raw[i+3:], "/?"); j >= 0 {
			return raw[:i+3+j]
		}
	}
	return raw
}

// decodeTransferError reads S3's XML error shape.
func decodeTransferError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var x struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	e := &TransferError{Status: resp.StatusCode}
	if xml.Unmarshal(data, &x) == nil && x.Code != "" {
		e.Code, e.Message = x.Code, x.Message
	} else {
		e.Code = http.StatusText(resp.StatusCode)
		e.Message = strings.Join(strings.Fields(string(data)), " ")
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "…"
		}
	}
	// S3 says "Request has expired"; the local stack "the URL has expired";
	// a URL whose signing session token expired is S3's 400 ExpiredToken.
	switch e.Code {
	case "ExpiredToken", "TokenRefreshRequired", "RequestExpired":
		e.Expired = true
	default:
		e.Expired = resp.StatusCode == http.StatusForbidden && strings.Contains(strings.ToLower(e.Message), "expired")
	}
	return e
}
