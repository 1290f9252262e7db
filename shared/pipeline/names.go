package pipeline

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// The names of things: where a dataset, its report and an adapter live in
// the blob store, where a worker and RunPod call back, and how a job's id
// follows from an Idempotency-Key. They are made here only, so that the
// API, the dispatcher, reconciliation and validation agree on them.

// DatasetKey is where a dataset's file lives: the owner, hex-encoded, and
// the id, so that an S3 event's key leads back to the record.
func DatasetKey(owner, id string) string {
	return "datasets/" + hex.EncodeToString([]byte(owner)) + "/" + id + ".jsonl"
}

// ParseDatasetKey is DatasetKey's inverse.
func ParseDatasetKey(key string) (owner, id string, err error) {
	parts := strings.Split(key, "/")
	if len(parts) != 3 || parts[0] != "datasets" || !strings.HasSuffix(parts[2], ".jsonl") {
		return "", "", Errorf(EInvalid, "object key %q is not a dataset key", key)
	}
	raw, err := hex.DecodeString(parts[1])
	id = strings.TrimSuffix(parts[2], ".jsonl")
	// Exactly the key DatasetKey makes (lower-case hex): no other key may
	// name a dataset.
	if err != nil || len(raw) == 0 || id == "" || DatasetKey(string(raw), id) != key {
		return "", "", Errorf(EInvalid, "object key %q is not a dataset key", key)
	}
	return string(raw), id, nil
}

// ReportKey is where a dataset's full validation report is stored.
func ReportKey(datasetKey string) string {
	return strings.TrimSuffix(datasetKey, ".jsonl") + ".report.json"
}

// ArtifactKey is where an attempt's adapter file is uploaded.
func ArtifactKey(owner, jobID string, attempt int, name string) string {
	return fmt.Sprintf("adapters/%s/%s/attempt-%d/%s", hex.EncodeToString([]byte(owner)), jobID, attempt, name)
}

// JobObjectPrefixes are the folders of a job's objects: its adapter files
// of every attempt and its checkpoints.
func JobObjectPrefixes(owner, jobID string) []string {
	o := hex.EncodeToString([]byte(owner))
	return []string{fmt.Sprintf("adapters/%s/%s/", o, jobID), fmt.Sprintf("checkpoints/%s/%s/", o, jobID)}
}

// CheckpointKey is where the file name of the checkpoint at step, stored
// by attempt, is uploaded: the attempt is in the key because two attempts
// may store different bytes for one step.
func CheckpointKey(owner, jobID string, attempt int, step int64, name string) string {
	return fmt.Sprintf("checkpoints/%s/%s/attempt-%d/step-%08d/%s", hex.EncodeToString([]byte(owner)), jobID, attempt, step, name)
}

// WorkerCallbackPath is the route of the worker's signed callbacks.
const WorkerCallbackPath = "/v1/callbacks/worker"

// RunPodWebhookPath is the route prefix of RunPod's completion webhook; the
// job's token follows it.
const RunPodWebhookPath = "/v1/callbacks/runpod/"

// WorkerCallbackURL is where a job's worker posts its callbacks: the
// owner rides in the query so that the job can be found; the signature,
// made with a secret derived from the job id, authenticates the rest.
func WorkerCallbackURL(base, owner string) string {
	return base + WorkerCallbackPath + "?o=" + hex.EncodeToString([]byte(owner))
}

// CallbackOwner reads the owner from a worker callback URL's "o" query
// value, as WorkerCallbackURL wrote it.
func CallbackOwner(o string) (string, error) {
	raw, err := hex.DecodeString(o)
	if err != nil || len(raw) == 0 {
		return "", Errorf(EUnauthorized, "callback URL is not one this service handed out")
	}
	return string(raw), nil
}

// RunPodWebhookURL is where RunPod posts the completion of one attempt of
// a job: the path carries the attempt's WebhookToken.
func RunPodWebhookURL(base string, secret []byte, owner, jobID string, attempt int) string {
	return base + RunPodWebhookPath + WebhookToken(secret, owner, jobID, attempt)
}

// WebhookToken authenticates RunPod's (unsigned) completion webhook: it
// names the job and attempt and carries an HMAC of them.
func WebhookToken(secret []byte, owner, jobID string, attempt int) string {
	payload := fmt.Sprintf("%s\x00%s\x00%d", owner, jobID, attempt)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(tokenMAC(secret, []byte(payload)))
}

func tokenMAC(secret, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("brightrun/runpod-webhook/v1\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

// ParseWebhookToken checks a token made by WebhookToken.
func ParseWebhookToken(secret []byte, token string) (owner, jobID string, attempt int, err error) {
	bad := Errorf(EUnauthorized, "webhook token is not one this service handed out")
	p64, s64, ok := strings.Cut(token, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	sig, err2 := base64.RawURLEncoding.DecodeString(s64)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(sig, tokenMAC(secret, payload)) {
		return "", "", 0, bad
	}
	parts := strings.Split(string(payload), "\x00")
	if len(parts) != 3 {
		return "", "", 0, bad
	}
	attempt, err = strconv.Atoi(parts[2])
	if err != nil {
		return "", "", 0, bad
	}
	return parts[0], parts[1], attempt, nil
}

// IdempotentJobID derives a job's id from its owner and Idempotency-Key, so
// that retries of one request collide on the store's conditional create.
func IdempotentJobID(owner, key string) string {
	sum := sha256.Sum256([]byte("brightrun/job/v1\x00" + owner + "\x00" + key))
	return "job_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16]))
}
