package contract_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/brightrun/brightrun/shared/contract"
)

type vector struct {
	Name         string `json:"name"`
	MasterSecret string `json:"master_secret"`
	JobID        string `json:"job_id"`
	JobSecret    string `json:"job_secret"`
	WebhookID    string `json:"webhook_id"`
	Timestamp    int64  `json:"timestamp"`
	Body         string `json:"body"`
	Signature    string `json:"signature"`
}

type vectorFile struct {
	DerivationPrefix string   `json:"derivation_prefix"`
	Vectors          []vector `json:"vectors"`
	Reference        vector   `json:"standard_webhooks_reference"`
}

func loadVectors(t *testing.T) vectorFile {
	t.Helper()
	var f vectorFile
	if err := json.Unmarshal(readFixture(t, "signatures.json"), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Vectors) == 0 {
		t.Fatal("signatures.json has no vectors")
	}
	return f
}

func headersOf(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(contract.HeaderID, id)
	h.Set(contract.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(contract.HeaderSignature, sig)
	return h
}

func TestTheDerivationPrefixMatchesTheVectors(t *testing.T) {
	if f := loadVectors(t); f.DerivationPrefix != contract.DerivationPrefix {
		t.Errorf("derivation_prefix = %q, want %q", f.DerivationPrefix, contract.DerivationPrefix)
	}
}

func TestEverySigningVectorDerivesSignsAndVerifies(t *testing.T) {
	f := loadVectors(t)
	for _, v := range f.Vectors {
		t.Run(v.Name+" derives, signs and verifies", func(t *testing.T) {
			key := contract.DeriveSecret([]byte(v.MasterSecret), v.JobID)
			if got := contract.FormatSecret(key); got != v.JobSecret {
				t.Errorf("FormatSecret(DeriveSecret) = %s, want %s", got, v.JobSecret)
			}
			parsed, err := contract.ParseSecret(v.JobSecret)
			if err != nil || !bytes.Equal(parsed, key) {
				t.Fatalf("ParseSecret(%s) = %x, %v; want %x", v.JobSecret, parsed, err, key)
			}
			ts := time.Unix(v.Timestamp, 0)
			if got := contract.Sign(key, v.WebhookID, ts, []byte(v.Body)); got != v.Signature {
				t.Errorf("Sign = %s, want %s", got, v.Signature)
			}
			h := headersOf(v.WebhookID, v.Timestamp, v.Signature)
			if err := contract.Verify(key, h, []byte(v.Body), ts); err != nil {
				t.Errorf("Verify = %v, want nil", err)
			}
			jobID, _, _, err := contract.ParseWebhookID(v.WebhookID)
			if err != nil || jobID != v.JobID {
				t.Errorf("ParseWebhookID(%s) = %s, %v; want %s", v.WebhookID, jobID, err, v.JobID)
			}
		})
		t.Run(v.Name+" fails with one flipped byte", func(t *testing.T) {
			key, _ := contract.ParseSecret(v.JobSecret)
			ts := time.Unix(v.Timestamp, 0)
			body := []byte(v.Body)
			if len(body) == 0 {
				body = []byte{0}
			} else {
				body = bytes.Clone(body)
				body[len(body)/2] ^= 0x01
			}
			if err := contract.Verify(key, headersOf(v.WebhookID, v.Timestamp, v.Signature), body, ts); !errors.Is(err, contract.ErrBadSignature) {
				t.Errorf("Verify(flipped body) = %v, want ErrBadSignature", err)
			}
			sig := []byte(v.Signature)
			sig[5] ^= 0x01
			if err := contract.Verify(key, headersOf(v.WebhookID, v.Timestamp, string(sig)), []byte(v.Body), ts); !errors.Is(err, contract.ErrBadSignature) {
				t.Errorf("Verify(flipped signature) = %v, want ErrBadSignature", err)
			}
			other := bytes.Clone(key)
			other[0] ^= 0x80
			if err := contract.Verify(other, headersOf(v.WebhookID, v.Timestamp, v.Signature), []byte(v.Body), ts); !errors.Is(err, contract.ErrBadSignature) {
				t.Errorf("Verify(other key) = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestTheStandardWebhooksReferenceVectorVerifies(t *testing.T) {
	r := loadVectors(t).Reference
	key, err := contract.ParseSecret(r.JobSecret)
	if err != nil {
		t.Fatalf("ParseSecret(%s) = %v", r.JobSecret, err)
	}
	ts := time.Unix(r.Timestamp, 0)
	if got := contract.Sign(key, r.WebhookID, ts, []byte(r.Body)); got != r.Signature {
		t.Errorf("Sign = %s, want %s", got, r.Signature)
	}
	if err := contract.Verify(key, headersOf(r.WebhookID, r.Timestamp, r.Signature), []byte(r.Body), ts); err != nil {
		t.Errorf("Verify = %v", err)
	}
}

func TestVerifyClassifiesEveryFailure(t *testing.T) {
	key := contract.DeriveSecret([]byte("master"), "job_1")
	body := []byte(`{"version":1}`)
	now := time.Unix(1_800_000_000, 0)
	id := contract.WebhookID("job_1", 1, 3)
	good := contract.Sign(key, id, now, body)
	at := func(ts time.Time) string { return contract.Sign(key, id, ts, body) }

	tests := []struct {
		name string
		h    http.Header
		want error
	}{
		{"a valid signature verifies", headersOf(id, now.Unix(), good), nil},
		{"a valid signature among others verifies", headersOf(id, now.Unix(), "v1,AAAA v2,xyz "+good+" v1,!!!"), nil},
		{"a timestamp 5 minutes old still verifies", headersOf(id, now.Add(-5*time.Minute).Unix(), at(now.Add(-5*time.Minute))), nil},
		{"a timestamp 5 minutes ahead still verifies", headersOf(id, now.Add(5*time.Minute).Unix(), at(now.Add(5*time.Minute))), nil},
		{"no headers are missing headers", http.Header{}, contract.ErrMissingHeaders},
		{"no signature is missing headers", func() http.Header { h := headersOf(id, now.Unix(), good); h.Del(contract.HeaderSignature); return h }(), contract.ErrMissingHeaders},
		{"no id is missing headers", func() http.Header { h := headersOf(id, now.Unix(), good); h.Del(contract.HeaderID); return h }(), contract.ErrMissingHeaders},
		{"a fractional timestamp is a bad timestamp", func() http.Header {
			h := headersOf(id, 0, good)
			h.Set(contract.HeaderTimestamp, "1800000000.5")
			return h
		}(), contract.ErrBadTimestamp},
		{"a negative timestamp is a bad timestamp", func() http.Header { h := headersOf(id, 0, good); h.Set(contract.HeaderTimestamp, "-1"); return h }(), contract.ErrBadTimestamp},
		{"a date timestamp is a bad timestamp", func() http.Header {
			h := headersOf(id, 0, good)
			h.Set(contract.HeaderTimestamp, now.Format(time.RFC3339))
			return h
		}(), contract.ErrBadTimestamp},
		{"a timestamp 301 s old is outside the window", headersOf(id, now.Add(-301*time.Second).Unix(), at(now.Add(-301*time.Second))), contract.ErrOutsideWindow},
		{"a timestamp 301 s ahead is outside the window", headersOf(id, now.Add(301*time.Second).Unix(), at(now.Add(301*time.Second))), contract.ErrOutsideWindow},
		{"a signature of another id is bad", headersOf(contract.WebhookID("job_1", 1, 4), now.Unix(), good), contract.ErrBadSignature},
		{"a signature of another timestamp is bad", headersOf(id, now.Unix()+1, good), contract.ErrBadSignature},
		{"a v2 signature is ignored", headersOf(id, now.Unix(), "v2"+good[2:]), contract.ErrBadSignature},
		{"an unprefixed signature is ignored", headersOf(id, now.Unix(), good[3:]), contract.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := contract.Verify(key, tt.h, body, now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAnEmptySecretNeverVerifies(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sig := contract.Sign(nil, "j.1.1", now, nil)
	if err := contract.Verify(nil, headersOf("j.1.1", now.Unix(), sig), nil, now); !errors.Is(err, contract.ErrBadSignature) {
		t.Errorf("Verify(empty secret) = %v, want ErrBadSignature", err)
	}
}

func TestASignedCallbackRoundTrips(t *testing.T) {
	key := contract.DeriveSecret([]byte("brightrun-example-master-secret-0123456789abcdef"), "job_rt")
	secret := contract.FormatSecret(key)
	parsedKey, err := contract.ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	loss := 0.75
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cb, err := contract.NewCallback("job_rt", 3, 12, now, &contract.Completed{
		FinalLoss: &loss, Steps: 10, TrainSeconds: 1.5, TokensTrained: 1000,
		Metrics: contract.CompletedMetrics{TotalSteps: 10, Device: "cuda"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(cb)
	if err != nil {
		t.Fatal(err)
	}
	h := contract.SignedHeaders(key, contract.WebhookID(cb.JobID, cb.Attempt, cb.Seq), now, body)
	if err := contract.Verify(parsedKey, h, body, now.Add(30*time.Second)); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	got, p, err := contract.ParseCallback(body)
	if err != nil {
		t.Fatalf("ParseCallback = %v", err)
	}
	jobID, attempt, seq, err := contract.ParseWebhookID(h.Get(contract.HeaderID))
	if err != nil || jobID != got.JobID || attempt != got.Attempt || seq != got.Seq {
		t.Errorf("webhook-id %s does not agree with the body (%s, %d, %d): %v", h.Get(contract.HeaderID), got.JobID, got.Attempt, got.Seq, err)
	}
	if c := p.(*contract.Completed); *c.FinalLoss != 0.75 || c.Metrics.Device != "cuda" {
		t.Errorf("payload = %+v", c)
	}
}

func TestParseWebhookIDRefusesOtherShapes(t *testing.T) {
	for _, id := range []string{"", "job", "job.1", "job.x.1", "job.1.0", ".1.1", "job.1.-1", "j ob.1.1"} {
		t.Run("the id "+strconv.Quote(id)+" is refused", func(t *testing.T) {
			if _, _, _, err := contract.ParseWebhookID(id); err == nil {
				t.Errorf("ParseWebhookID(%q) = nil error", id)
			}
		})
	}
	jobID, a, s, err := contract.ParseWebhookID("job.with.dots.2.9")
	if err == nil {
		t.Errorf("ParseWebhookID(job.with.dots.2.9) = %s %d %d, want an error (dots are not in job ids)", jobID, a, s)
	}
}

func TestParseSecretRefusesMalformedSecrets(t *testing.T) {
	for _, s := range []string{"", "whsec_", "o63m/voxxkyAs3VGCDLuLQZ+fzWcUPCLnhOsRQMrsS4=", "whsec_o63m/voxxkyAs3VGCDLuLQZ+fzWcUPCLnhOsRQMrsS4", "whsec_c2hvcnQ=", "whsec_!!!!"} {
		t.Run("the secret "+strconv.Quote(s)+" is refused", func(t *testing.T) {
			if _, err := contract.ParseSecret(s); !errors.Is(err, contract.ErrBadSecret) {
				t.Errorf("ParseSecret(%q) = %v, want ErrBadSecret", s, err)
			}
		})
	}
}

// TestACallbackVerifiesAfterTheLambdaProxySplitsItsHeaders sends a signed
// request through the conversion API Gateway's Lambda proxy makes: it
// splits header values on commas, so "v1,<base64>" arrives as two values.
func TestACallbackVerifiesAfterTheLambdaProxySplitsItsHeaders(t *testing.T) {
	secret := contract.DeriveSecret([]byte("master"), "job_1")
	body := []byte(`{"type":"progress"}`)
	now := time.Unix(1_765_000_000, 0)
	other := contract.Sign([]byte("another key"), "msg_1", now, body)
	for _, tc := range []struct {
		name, signature string
	}{
		{"one signature", contract.Sign(secret, "msg_1", now, body)},
		{"the right one second of two", other + " " + contract.Sign(secret, "msg_1", now, body)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			event := events.APIGatewayV2HTTPRequest{
				RawPath: "/v1/callbacks/worker",
				Headers: map[string]string{
					contract.HeaderID:        "msg_1",
					contract.HeaderTimestamp: strconv.FormatInt(now.Unix(), 10),
					contract.HeaderSignature: tc.signature,
				},
				Body: string(body),
				RequestContext: events.APIGatewayV2HTTPRequestContext{
					HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: http.MethodPost, Path: "/v1/callbacks/worker"},
				},
			}
			var acc core.RequestAccessorV2
			r, err := acc.EventToRequest(event)
			if err != nil {
				t.Fatalf("EventToRequest: %v", err)
			}
			if n := len(r.Header.Values(contract.HeaderSignature)); n < 2 {
				t.Fatalf("the proxy gave %d signature values; this test expects it to split them", n)
			}
			if err := contract.Verify(secret, r.Header, body, now); err != nil {
				t.Errorf("Verify(after the proxy) = %v, want nil", err)
			}
		})
	}
}
