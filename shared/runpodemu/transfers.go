package runpodemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/brightrun/brightrun/shared/contract"
)

// Moving files through presigned URLs that are asked for when needed, as
// gpu-image's transfers.py does:
//
//   - fetch: one file down; a URL that refuses (401 / 403, or S3's 400
//     ExpiredToken when the credentials that signed it expired) is replaced
//     by a fresh one, up to transferRounds times; the job spec's URL is the
//     fallback when the server hands out none.
//   - uploadFiles: files up; after a failed round the files still missing
//     get fresh URLs (the urls request's retry); the spec's URLs are the
//     fallback (artifacts only). errNoUploadURLs when no URL can be had.
//
// Fault.ExpireURLs makes the spec's URLs and the first answered URL of
// every upload expired: the emulator answers for S3 (403 AccessDenied,
// "Request has expired") without sending the request.

// transferRounds is how many URL sets a transfer tries (the first plus fresh ones).
const transferRounds = 3

// putTries is how often one PUT is tried on network errors, 429 and 5xx.
const putTries = 4

// errNoUploadURLs: the server hands out no upload URLs and there is no
// fallback (checkpoints then stop being written).
var errNoUploadURLs = errors.New("the server does not hand out upload URLs")

// file is one file to upload.
type file struct {
	name string
	data []byte
}

func fileRef(f file) contract.FileRef {
	sum := sha256.Sum256(f.data)
	return contract.FileRef{Name: f.name, SizeBytes: int64(len(f.data)), SHA256: hex.EncodeToString(sum[:])}
}

// expiredStatus is S3's answer to a presigned URL past its expiry.
const expiredStatus = http.StatusForbidden

// fetch downloads one file (size and sha256 checked). first is a set of
// URLs already asked for; a refusal of its URL gets a fresh one.
func (w *simWorker) fetch(ctx context.Context, purpose string, ref contract.FileRef, what string, fallback *contract.PresignedURL,
	first *grant, step int64, checkpointID string) ([]byte, error) {
	var last error
	for r := 0; r < transferRounds; r++ {
		g := first
		if r > 0 || first == nil {
			g = w.urls.ask(ctx, purpose, []contract.URLFile{{Name: ref.Name}}, step, checkpointID, r)
		}
		var t *contract.PresignedURL
		answered := false
		if g != nil {
			if u, ok := g.urls[ref.Name]; ok {
				t, answered = &u, true
			}
		}
		if t == nil {
			t = fallback
		}
		if t == nil {
			if last != nil {
				return nil, last
			}
			return nil, failure(contract.CodeDatasetDownload, "", "No download URL for the %s could be had.", what)
		}
		data, err := w.download(ctx, *t, ref, what, !answered && w.run.fault.ExpireURLs)
		if err == nil {
			return data, nil
		}
		var werr *workerError
		if !errors.As(err, &werr) || !werr.urlExpired || w.urls.unsupported() {
			return nil, err
		}
		last = err
		w.log.Warn("download: the URL was refused: asking for a fresh one", "file", ref.Name, "status", werr.httpStatus)
	}
	return nil, last
}

// download GETs one URL with its headers and checks the size and sha256,
// as gpu-image's download does (any mismatch is dataset_download);
// network errors, 429 and 5xx are tried again. expired: answer 403 for
// S3 without asking it.
func (w *simWorker) download(ctx context.Context, t contract.PresignedURL, ref contract.FileRef, what string, expired bool) ([]byte, error) {
	var last string
	for try := 0; try < 3; try++ {
		if try > 0 {
			if err := sleepCtx(ctx, w.e.cfg.CallbackRetryDelay<<(try-1)); err != nil {
				return nil, err
			}
		}
		status, data, err := w.get(ctx, t, ref.SizeBytes, expired)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, context.Cause(ctx)
		case err != nil && status == 0:
			last = "network error: " + err.Error()
			continue
		case status == http.StatusTooManyRequests || status >= 500:
			last = "HTTP " + strconv.Itoa(status)
			continue
		case status != http.StatusOK:
			advice := "Retry the job (it gets a fresh download link); if it fails again, check that the dataset still exists."
			expired := urlExpired(status, data)
			note := "."
			if expired {
				note = " (the download link may have expired)."
			}
			werr := failure(contract.CodeDatasetDownload, advice, "The %s URL answered HTTP %d%s", what, status, note)
			werr.httpStatus, werr.urlExpired = status, expired
			return nil, werr
		case err != nil:
			last = "transfer broken: " + err.Error()
			continue
		}
		if int64(len(data)) != ref.SizeBytes {
			return nil, failure(contract.CodeDatasetDownload, "", "The %s has %d bytes, expected %d.", what, len(data), ref.SizeBytes)
		}
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != ref.SHA256 {
			return nil, failure(contract.CodeDatasetDownload, "Retry the job; if it fails again, upload the dataset again.",
				"The downloaded %s does not match its checksum (sha256 %s, expected %s): it was corrupted in transit or changed after validation.", what, got, ref.SHA256)
		}
		return data, nil
	}
	return nil, failure(contract.CodeDatasetDownload, "", "The %s could not be downloaded after 3 tries (%s).", what, last)
}

// expiredCodes are the S3 error codes of a 400 that means the URL can no
// longer be used: the credentials that signed it expired (a Lambda role's
// session token), whatever X-Amz-Expires says.
var expiredCodes = []string{"<Code>ExpiredToken</Code>", "<Code>TokenRefreshRequired</Code>", "<Code>RequestExpired</Code>"}

// urlExpired reports whether an error answer means the presigned URL has
// expired, so that a fresh one may work (gpu-image's download.url_expired).
func urlExpired(status int, body []byte) bool {
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		return true
	}
	return status == http.StatusBadRequest && slices.ContainsFunc(expiredCodes, func(c string) bool { return bytes.Contains(body, []byte(c)) })
}

// get sends one GET and returns the status and the body (of an error
// answer, its first 8 KiB); err with a status is a broken transfer.
func (w *simWorker) get(ctx context.Context, t contract.PresignedURL, size int64, expired bool) (int, []byte, error) {
	if expired {
		w.log.Info("emulated S3: 403 AccessDenied, Request has expired", "method", "GET")
		return expiredStatus, nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL, nil)
	if err != nil {
		return http.StatusBadRequest, nil, nil // an unusable URL is a refusal, not a network error
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := w.e.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
		return resp.StatusCode, body, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, size+1))
	return resp.StatusCode, data, err
}

// uploadFiles uploads every file and returns their refs. After a failed
// round the files not yet uploaded are tried again with fresh URLs. It
// fails with upload when every round failed, and with errNoUploadURLs
// when no URL can be had.
func (w *simWorker) uploadFiles(ctx context.Context, purpose string, files []file, fallback map[string]contract.PresignedURL, step int64) ([]contract.FileRef, error) {
	refs := make([]contract.FileRef, len(files))
	for i, f := range files {
		refs[i] = fileRef(f)
	}
	pending := slices.Clone(files)
	last := ""
	for r := 0; r < transferRounds; r++ {
		if err := w.check(ctx); err != nil {
			return nil, err
		}
		if r > 0 {
			if err := sleepCtx(ctx, w.e.cfg.CallbackRetryDelay<<(r-1)); err != nil {
				return nil, err
			}
		}
		var asked []contract.URLFile
		for _, f := range pending {
			ref := fileRef(f)
			asked = append(asked, contract.URLFile{Name: ref.Name, SizeBytes: ref.SizeBytes, SHA256: ref.SHA256})
		}
		g := w.urls.ask(ctx, purpose, asked, step, "", r)
		targets := fallback
		if g != nil {
			targets = g.urls
		}
		if targets == nil {
			if w.urls.unsupported() {
				return nil, fmt.Errorf("%w (HTTP %d)", errNoUploadURLs, w.urls.refused())
			}
			last = "no upload URLs could be had"
			continue
		}
		// The first answer of an upload, or the spec's URLs, have expired.
		expired := w.run.fault.ExpireURLs && (g == nil || r == 0)
		for len(pending) > 0 {
			if err := w.check(ctx); err != nil {
				return nil, err
			}
			f := pending[0]
			status, err := w.put(ctx, f, targets[f.name], expired)
			if err != nil {
				var werr *workerError
				if !errors.As(err, &werr) || werr.code != contract.CodeUpload {
					return nil, err
				}
				last = strings.TrimSuffix(werr.message, ".")
				if status != 0 {
					last = "HTTP " + strconv.Itoa(status)
				}
				w.log.Warn("upload round failed", "purpose", purpose, "round", r+1, "of", transferRounds, "error", werr.message)
				break
			}
			pending = pending[1:]
		}
		if len(pending) == 0 {
			return refs, nil
		}
		if g == nil && w.urls.unsupported() {
			break // the spec's URLs failed and no fresh ones can be had
		}
	}
	names := make([]string, len(pending))
	for i, f := range pending {
		names[i] = f.name
	}
	slices.Sort(names)
	rounds := ""
	if w.urls.confirmed() {
		rounds = fmt.Sprintf(" after %d rounds of fresh URLs", transferRounds)
	}
	return nil, failure(contract.CodeUpload, "", "Uploading %s failed%s (last: %s).", strings.Join(names, ", "), rounds, last)
}

// put PUTs one file with the URL's headers; network errors, 429 and 5xx
// are tried again, any other answer (an expired or wrong URL) fails at
// once: only a fresh URL helps. It returns the last HTTP status.
func (w *simWorker) put(ctx context.Context, f file, t contract.PresignedURL, expired bool) (int, error) {
	fail := func(status int, last string) (int, error) {
		werr := failure(contract.CodeUpload, "", "Uploading %s failed (%s).", f.name, last)
		werr.httpStatus = status
		return status, werr
	}
	switch {
	case w.run.fault.FailUpload:
		w.log.Info("emulated S3: 403 for every upload (FailUpload)", "file", f.name)
		return fail(http.StatusForbidden, "HTTP 403, injected by the emulator")
	case expired:
		w.log.Info("emulated S3: 403 AccessDenied, Request has expired", "method", "PUT", "file", f.name)
		return fail(expiredStatus, "HTTP 403")
	}
	var last string
	status := 0
	for try := 0; try < putTries; try++ {
		if try > 0 {
			if err := sleepCtx(ctx, w.e.cfg.CallbackRetryDelay<<(try-1)); err != nil {
				return 0, err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, t.URL, bytes.NewReader(f.data))
		if err != nil {
			return fail(0, err.Error())
		}
		for k, v := range t.Headers {
			req.Header.Set(k, v)
		}
		req.ContentLength = int64(len(f.data))
		resp, err := w.e.cfg.HTTPClient.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			last = "network error: " + err.Error()
			continue
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return resp.StatusCode, nil
		}
		status, last = resp.StatusCode, "HTTP "+strconv.Itoa(resp.StatusCode)
		if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode < 500 {
			break // an expired or wrong URL does not get better
		}
	}
	return fail(status, last)
}
