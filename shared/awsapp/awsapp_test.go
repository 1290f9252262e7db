package awsapp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// fakeAWS answers Secrets Manager's GetSecretValue from values (a missing
// id is a secret without a value, as the RunPod API key's is until the
// operator sets it) and DynamoDB's Query with two datasets of the owner
// asked for, recording the secrets read.
type fakeAWS struct {
	*httptest.Server
	values map[string]string // SecretId -> SecretString

	mu   sync.Mutex
	read []string
}

func newFakeAWS(t *testing.T, values map[string]string) *fakeAWS {
	t.Helper()
	f := &fakeAWS{values: values}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	for k, v := range map[string]string{
		"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDTEST", "AWS_SECRET_ACCESS_KEY": "secret",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_ENDPOINT_URL": f.URL,
		"AWS_CONFIG_FILE": filepath.Join(t.TempDir(), "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(t.TempDir(), "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1",
	} {
		t.Setenv(k, v)
	}
	return f
}

func (f *fakeAWS) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	var body map[string]any
	data, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(data, &body)
	fail := func(kind, msg string) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": kind, "message": msg})
	}
	switch target {
	case "secretsmanager.GetSecretValue":
		id, _ := body["SecretId"].(string)
		f.mu.Lock()
		f.read = append(f.read, id)
		f.mu.Unlock()
		v, ok := f.values[id]
		if !ok {
			fail("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: AWSCURRENT")
			return
		}
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]string{"ARN": id, "Name": id, "SecretString": v})
	case "DynamoDB_20120810.Query":
		// The list's partition is the key condition's one value.
		var hash string
		values, _ := body["ExpressionAttributeValues"].(map[string]any)
		for _, v := range values {
			hash, _ = v.(map[string]any)["S"].(string)
		}
		item := func(id string) map[string]any {
			doc, _ := json.Marshal(pipeline.Dataset{ID: id, Owner: "alice"})
			return map[string]any{
				"pk": map[string]string{"S": "OWNER#alice"}, "sk": map[string]string{"S": "DATASET#" + id},
				"list_pk": map[string]string{"S": hash}, "list_sk": map[string]string{"S": "2026-12-01T00:00:00Z#" + id},
				"doc": map[string]string{"S": string(doc)},
			}
		}
		out, _ := json.Marshal(map[string]any{"Items": []any{item("ds_b"), item("ds_a")}, "Count": 2, "ScannedCount": 2})
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(out)), 10))
		_, _ = w.Write(out)
	default:
		fail("UnknownOperationException", target)
	}
}

func (f *fakeAWS) secretsRead() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.read))
}

const (
	runpodARN   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:runpod-AbCdEf"
	callbackARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:callback-AbCdEf"
	cursorARN   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:cursor-AbCdEf"
)

// env is what template.yaml gives a function, all variables set.
func env(name string) string {
	return map[string]string{
		awsapp.EnvTable: "brightrun", awsapp.EnvBucket: "brightrun-bucket",
		awsapp.EnvQueueURL: "https://sqs.us-east-1.amazonaws.com/123456789012/jobs", awsapp.EnvPublicURL: "https://api.example",
		awsapp.EnvEndpointID: "endpoint1", awsapp.EnvRunPodURL: "https://api.runpod.example/v2",
		awsapp.EnvRunPodKeyARN: runpodARN, awsapp.EnvCallbackMasterARN: callbackARN, awsapp.EnvCursorKeyARN: cursorARN,
	}[name]
}

func goodSecrets() map[string]string {
	return map[string]string{runpodARN: "rp_key", callbackARN: strings.Repeat("m", 64), cursorARN: strings.Repeat("c", 64)}
}

func TestLoadNamesEveryVariableItsPartsNeed(t *testing.T) {
	tests := []struct {
		parts awsapp.Part
		want  string
	}{
		{awsapp.Store, "BRIGHTRUN_TABLE"},
		{awsapp.Store | awsapp.Cursors, "BRIGHTRUN_CURSOR_KEY_ARN, BRIGHTRUN_TABLE"},
		{awsapp.GPU, "BRIGHTRUN_RUNPOD_API_KEY_ARN, RUNPOD_ENDPOINT_ID"},
		{awsapp.Callbacks, "BRIGHTRUN_CALLBACK_MASTER_ARN"},
		{awsapp.Store | awsapp.Blobs | awsapp.GPU | awsapp.Callbacks | awsapp.Public,
			"BRIGHTRUN_BUCKET, BRIGHTRUN_CALLBACK_MASTER_ARN, BRIGHTRUN_PUBLIC_URL, BRIGHTRUN_RUNPOD_API_KEY_ARN, BRIGHTRUN_TABLE, RUNPOD_ENDPOINT_ID"},
	}
	for _, tt := range tests {
		_, err := awsapp.Load(context.Background(), func(string) string { return "" }, tt.parts)
		if want := "missing environment variables: " + tt.want; err == nil || err.Error() != want {
			t.Errorf("Load(parts %b) with no environment = %v, want %q", tt.parts, err, want)
		}
	}
}

func TestCursorsNeedTheStore(t *testing.T) {
	if _, err := awsapp.Load(context.Background(), env, awsapp.Cursors); err == nil {
		t.Error("Load(Cursors) without Store succeeded, want an error")
	}
}

// Each function reads the secrets of its parts and no other, so that its
// role can be kept from the rest (the parts are functions/*/main.go's).
func TestEachFunctionReadsOnlyTheSecretsItsPartsNeed(t *testing.T) {
	tests := []struct {
		function string
		parts    awsapp.Part
		want     []string
	}{
		{"uploads", awsapp.Store | awsapp.Cursors | awsapp.Blobs, []string{cursorARN}},
		{"validate", awsapp.Store | awsapp.Blobs, nil},
		{"estimate", awsapp.Store, nil},
		{"jobs", awsapp.Store | awsapp.Cursors | awsapp.Blobs | awsapp.Queue | awsapp.GPU, []string{cursorARN, runpodARN}},
		{"dispatch", awsapp.Store | awsapp.Blobs | awsapp.GPU | awsapp.Callbacks | awsapp.Public, []string{callbackARN, runpodARN}},
		{"webhook", awsapp.Store | awsapp.Blobs | awsapp.GPU | awsapp.Callbacks, []string{callbackARN, runpodARN}},
		{"reconcile", awsapp.Store | awsapp.Blobs | awsapp.Queue | awsapp.GPU, []string{runpodARN}},
	}
	for _, tt := range tests {
		t.Run(tt.function, func(t *testing.T) {
			f := newFakeAWS(t, goodSecrets())
			app, err := awsapp.Load(context.Background(), env, tt.parts)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.secretsRead(); !slices.Equal(got, tt.want) {
				t.Errorf("%s read the secrets %v, want %v", tt.function, got, tt.want)
			}
			if got, want := string(app.CallbackSecret), goodSecrets()[callbackARN]; tt.parts&awsapp.Callbacks != 0 && got != want {
				t.Errorf("%s's callback secret = %q, want the secret's %q", tt.function, got, want)
			} else if tt.parts&awsapp.Callbacks == 0 && app.CallbackSecret != nil {
				t.Errorf("%s has a callback secret without the Callbacks part", tt.function)
			}
		})
	}
}

func TestLoadNamesEverySecretItCannotUse(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]string
		want   []string // substrings of the error
	}{
		{"the RunPod API key not set yet, a short cursor key", map[string]string{callbackARN: strings.Repeat("m", 64), cursorARN: "short"},
			[]string{"RunPod API key secret " + runpodARN + " (BRIGHTRUN_RUNPOD_API_KEY_ARN) has no value", "docs/deploy.md, step 7",
				"cursor key secret " + cursorARN + " (BRIGHTRUN_CURSOR_KEY_ARN) must be at least 32 characters"}},
		{"the RunPod API key as the old JSON document", map[string]string{runpodARN: `{"runpod_api_key": "rp"}`, callbackARN: strings.Repeat("m", 64), cursorARN: strings.Repeat("c", 64)},
			[]string{"holds a JSON document: it must hold the RunPod API key itself"}},
		{"an empty RunPod API key, a short callback master", map[string]string{runpodARN: " \n", callbackARN: "short", cursorARN: strings.Repeat("c", 64)},
			[]string{"RunPod API key secret " + runpodARN + " (BRIGHTRUN_RUNPOD_API_KEY_ARN) is empty",
				"callback master secret " + callbackARN + " (BRIGHTRUN_CALLBACK_MASTER_ARN) must be at least 32 characters"}},
	}
	all := awsapp.Store | awsapp.Cursors | awsapp.GPU | awsapp.Callbacks
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newFakeAWS(t, tt.values)
			_, err := awsapp.Load(context.Background(), env, all)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load = %v\nwant it to say %q", err, w)
				}
			}
		})
	}
}

// Without the Cursors part each process signs cursors with a key of its
// own: a cursor pages on in the process that made it (reconcile's scan)
// and nowhere else. With it, every instance honours every other's.
func TestOnlyTheCursorsPartSharesCursorsBetweenInstances(t *testing.T) {
	for _, tt := range []struct {
		parts  awsapp.Part
		shared bool
	}{
		{awsapp.Store, false},
		{awsapp.Store | awsapp.Cursors, true},
	} {
		t.Run(fmt.Sprintf("parts %b", tt.parts), func(t *testing.T) {
			newFakeAWS(t, goodSecrets())
			ctx := context.Background()
			one, err := awsapp.Load(ctx, env, tt.parts)
			if err != nil {
				t.Fatal(err)
			}
			two, err := awsapp.Load(ctx, env, tt.parts)
			if err != nil {
				t.Fatal(err)
			}
			_, next, err := one.Store.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1})
			if err != nil || next == "" {
				t.Fatalf("ListDatasets(limit 1) = cursor %q, %v; want a next page", next, err)
			}
			if _, _, err := one.Store.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1, Cursor: next}); err != nil {
				t.Errorf("the instance that made the cursor refused it: %v", err)
			}
			_, _, err = two.Store.ListDatasets(ctx, "alice", pipeline.Page{Limit: 1, Cursor: next})
			if tt.shared && err != nil {
				t.Errorf("another instance refused the cursor: %v", err)
			}
			if !tt.shared && pipeline.ErrorCode(err) != pipeline.EInvalid {
				t.Errorf("another instance answered %v to the cursor, want it refused (invalid)", err)
			}
		})
	}
}
