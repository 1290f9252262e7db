package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/brightrun/brightrun/console"
	"github.com/brightrun/brightrun/shared/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

var outputs = []byte(`[
 {"OutputKey": "ApiUrl", "OutputValue": "https://abc123.execute-api.eu-west-1.amazonaws.com"},
 {"OutputKey": "ConsoleUrl", "OutputValue": "https://d111.cloudfront.net/"},
 {"OutputKey": "ConsoleBucketName", "OutputValue": "BUCKET"},
 {"OutputKey": "ConsoleUserPoolClientId", "OutputValue": "client123"},
 {"OutputKey": "ConsoleSignInDomain", "OutputValue": "https://brightrun-1-x.auth.eu-west-1.amazoncognito.com"}
]`)

// The console's config.json points at the stack's API and hosted UI.
func TestThePlanPointsTheConsoleAtTheStack(t *testing.T) {
	site, err := Plan(outputs)
	if err != nil {
		t.Fatal(err)
	}
	var cfg console.Config
	for _, f := range site.Files {
		if f.Key == "config.json" {
			if err := json.Unmarshal(f.Body, &cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := console.Config{APIBase: "https://abc123.execute-api.eu-west-1.amazonaws.com", Auth: "cognito",
		Cognito: &console.Cognito{Domain: "https://brightrun-1-x.auth.eu-west-1.amazoncognito.com", ClientID: "client123", RedirectURI: "https://d111.cloudfront.net/"}}
	if cfg.APIBase != want.APIBase || cfg.Auth != want.Auth || cfg.Cognito == nil || *cfg.Cognito != *want.Cognito {
		t.Errorf("config.json = %+v %+v, want %+v %+v", cfg, cfg.Cognito, want, want.Cognito)
	}
	if _, err := Plan([]byte(`[{"OutputKey": "ApiUrl", "OutputValue": "https://x"}]`)); err == nil || !strings.Contains(err.Error(), "ConsoleUserPoolClientId") {
		t.Errorf("Plan without the console's outputs = %v, want an error naming them", err)
	}
}

// A publish writes every file with its content type, and a later publish
// removes what the console no longer has.
func TestAPublishUploadsTheConsoleAndRemovesWhatItNoLongerHas(t *testing.T) {
	gw := awstest.VersityGW(t)
	ctx := context.Background()
	client := s3.NewFromConfig(gw.Config, func(o *s3.Options) { o.UsePathStyle = true })
	bucket := awstest.UniqueName("console")
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("assets/app/old.js"), Body: strings.NewReader("old")}); err != nil {
		t.Fatal(err)
	}
	site, err := Plan(bytes.ReplaceAll(outputs, []byte("BUCKET"), []byte(bucket)))
	if err != nil {
		t.Fatal(err)
	}
	if err := Publish(ctx, client, site, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range site.Files {
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(f.Key)})
		if err != nil {
			t.Errorf("GetObject(%s): %v", f.Key, err)
			continue
		}
		body, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if !bytes.Equal(body, f.Body) || aws.ToString(out.ContentType) != f.ContentType || aws.ToString(out.CacheControl) != "no-cache" {
			t.Errorf("%s: %d bytes, %q, %q; want %d bytes, %q, no-cache", f.Key, len(body), aws.ToString(out.ContentType), aws.ToString(out.CacheControl), len(f.Body), f.ContentType)
		}
	}
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("assets/app/old.js")}); err == nil {
		t.Error("assets/app/old.js, no longer part of the console, is still in the bucket")
	}
}
