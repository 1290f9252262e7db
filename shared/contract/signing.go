package contract

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Callback signing, the Standard Webhooks way (standardwebhooks.com, whose
// published example is one of the vectors in signatures.json):
//
//	per-job key  = HMAC-SHA256(key = master secret, msg = DerivationPrefix + job_id)
//	secret       = "whsec_" + standard base64(per-job key)   (the job spec's callback.secret)
//	signature    = "v1," + standard base64(HMAC-SHA256(key, webhook_id + "." + timestamp + "." + body))
//
// sent in the headers webhook-id (job_id.attempt.seq, see WebhookID),
// webhook-timestamp (Unix seconds) and webhook-signature (one or more
// space-separated "v1,<signature>" entries).

// DerivationPrefix is prepended to the job id to derive its key.
const DerivationPrefix = "brightrun/callback/v1/"

// SecretPrefix starts a formatted secret.
const SecretPrefix = "whsec_"

// The signature headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a webhook-timestamp may be from the receiver's
// clock, either way. A receiver that refuses replays needs to remember a
// verified webhook-id only for 2 × Tolerance: older messages fail Verify.
const Tolerance = 5 * time.Minute

// Secret lengths the worker accepts (Standard Webhooks: 24 to 64 bytes).
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// Verification errors; Verify wraps one of them with detail.
var (
	ErrMissingHeaders = errors.New("contract: missing webhook signature headers")
	ErrBadTimestamp   = errors.New("contract: malformed webhook-timestamp")
	ErrOutsideWindow  = errors.New("contract: webhook-timestamp outside the tolerance window")
	ErrBadSignature   = errors.New("contract: no valid webhook signature")
	ErrBadSecret      = errors.New("contract: malformed signing secret")
)

// DeriveSecret returns the per-job signing key: HMAC-SHA256 keyed with the
// master secret over DerivationPrefix + jobID. Only the server, which holds
// the master secret, calls it; the worker receives the result in the job
// spec (FormatSecret).
func DeriveSecret(master []byte, jobID string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(DerivationPrefix + jobID))
	return m.Sum(nil)
}

// FormatSecret returns "whsec_" + the standard base64 (with padding) of key.
func FormatSecret(key []byte) string {
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}

// ParseSecret decodes a formatted secret: "whsec_" followed by standard
// base64 of 24 to 64 bytes.
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: must start with %q", ErrBadSecret, SecretPrefix)
	}
	key, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: is not valid standard base64 after the %s prefix", ErrBadSecret, SecretPrefix)
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("%w: must decode to %d..%d bytes, got %d", ErrBadSecret, MinSecretBytes, MaxSecretBytes, len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature value ("v1," + base64 HMAC-SHA256) of
// one message: id and ts as sent in webhook-id and webhook-timestamp, body
// the exact bytes sent.
func Sign(secret []byte, id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(mac(secret, id, ts.Unix(), body))
}

// SignedHeaders returns the three signature headers of one message.
func SignedHeaders(secret []byte, id string, ts time.Time, body []byte) http.Header {
	h := make(http.Header, 3)
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, Sign(secret, id, ts, body))
	return h
}

func mac(secret []byte, id string, ts int64, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// maxSignatures bounds the work one request can cause.
const maxSignatures = 16

// Verify checks a signed request: the three headers are present, the
// timestamp is within Tolerance of now (either way), and one of the
// space-separated "v1,<base64>" signatures matches (constant-time
// comparison). It returns nil or an error wrapping ErrMissingHeaders,
// ErrBadTimestamp, ErrOutsideWindow or ErrBadSignature. Refusing a replayed
// webhook-id is the receiver's job (see Tolerance and ParseWebhookID).
func Verify(secret []byte, h http.Header, body []byte, now time.Time) error {
	// The signature header's values are joined again: API Gateway's Lambda
	// proxy (aws-lambda-go-api-proxy) splits a header on commas, so
	// "v1,<base64>" reaches the handler as two values, "v1" and "<base64>".
	id, tsText := h.Get(HeaderID), h.Get(HeaderTimestamp)
	sigs := strings.Join(h.Values(HeaderSignature), ",")
	var missing []string
	for _, p := range []struct{ name, v string }{{HeaderID, id}, {HeaderTimestamp, tsText}, {HeaderSignature, sigs}} {
		if p.v == "" {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingHeaders, strings.Join(missing, ", "))
	}
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, clip(tsText))
	}
	if d := now.Unix() - ts; d > int64(Tolerance/time.Second) || d < -int64(Tolerance/time.Second) {
		return fmt.Errorf("%w: timestamp %d is %ds from now (tolerance %s)", ErrOutsideWindow, ts, d, Tolerance)
	}
	if len(secret) == 0 {
		return fmt.Errorf("%w: empty signing secret", ErrBadSignature)
	}
	want := mac(secret, id, ts, body)
	n := 0
	for _, entry := range strings.Split(sigs, " ") {
		version, value, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		if n++; n > maxSignatures {
			break
		}
		got, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w for webhook-id %q", ErrBadSignature, clip(id))
}

// parseTimestamp accepts Unix seconds as plain decimal digits.
func parseTimestamp(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errors.New("bad length")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not a decimal integer")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// WebhookID returns the webhook-id of one message: job_id.attempt.seq.
// Retries of a message keep it; it is unique per (job, attempt, seq).
func WebhookID(jobID string, attempt int, seq int64) string {
	return jobID + "." + strconv.Itoa(attempt) + "." + strconv.FormatInt(seq, 10)
}

// ParseWebhookID splits a webhook-id made by WebhookID. A receiver checks
// that it agrees with the body's job_id, attempt and seq.
func ParseWebhookID(id string) (jobID string, attempt int, seq int64, err error) {
	rest, seqText, ok1 := cutLast(id, ".")
	jobID, attemptText, ok2 := cutLast(rest, ".")
	if !ok1 || !ok2 || !ValidJobID(jobID) {
		return "", 0, 0, fmt.Errorf("contract: webhook-id %q is not job_id.attempt.seq", clip(id))
	}
	a, err1 := strconv.Atoi(attemptText)
	s, err2 := strconv.ParseInt(seqText, 10, 64)
	if err1 != nil || err2 != nil || a < 1 || s < 1 {
		return "", 0, 0, fmt.Errorf("contract: webhook-id %q is not job_id.attempt.seq", clip(id))
	}
	return jobID, a, s, nil
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
