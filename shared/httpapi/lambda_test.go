package httpapi_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/local"
)

func loadEvent(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	data, err := os.ReadFile("../../testdata/events/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// The uploads Lambda serves the same handler through the API Gateway proxy,
// taking the owner from the JWT claims API Gateway verified.
func TestLambdaProxyServesUploadsWithJWTClaims(t *testing.T) {
	dir := t.TempDir()
	db, err := local.OpenDB(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, _ := local.NewStore(db)
	blobs, _ := local.NewBlobs(local.BlobsOptions{Dir: dir, BaseURL: "http://blobs.test", Secret: bytes.Repeat([]byte("s"), 32)})
	api := &httpapi.Server{Store: store, Blobs: blobs, Auth: httpapi.APIGatewayJWT{}}
	proxy := httpadapter.NewV2(api.Handler(httpapi.FnUploads))

	ev := loadEvent(t, "apigw-v2-create-dataset.json")
	resp, err := proxy.ProxyWithContext(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 201 {
		t.Fatalf("proxied POST /v1/datasets = %d %s, want 201", resp.StatusCode, resp.Body)
	}
	var c created
	if err := json.Unmarshal([]byte(resp.Body), &c); err != nil {
		t.Fatal(err)
	}
	owner := ev.RequestContext.Authorizer.JWT.Claims["sub"]
	if _, err := store.GetDataset(t.Context(), owner, c.Dataset.ID); err != nil {
		t.Errorf("dataset not stored under the JWT subject %q: %v", owner, err)
	}

	ev.RequestContext.Authorizer = nil
	resp, err = proxy.ProxyWithContext(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 401 {
		t.Errorf("proxied request without verified claims = %d, want 401", resp.StatusCode)
	}

	ev = loadEvent(t, "apigw-v2-create-dataset.json")
	ev.RawPath, ev.RequestContext.HTTP.Path = "/v1/jobs", "/v1/jobs"
	resp, _ = proxy.ProxyWithContext(t.Context(), ev)
	if resp.StatusCode != 404 {
		t.Errorf("the uploads function serving POST /v1/jobs = %d, want 404 (not its route)", resp.StatusCode)
	}
}
