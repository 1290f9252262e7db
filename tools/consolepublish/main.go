// Command consolepublish uploads the web console to the bucket CloudFront
// serves it from, after `sam deploy`: the files embedded in package console
// (the same bytes the local stack serves) and a config.json that points the
// page at the stack's API and its Cognito hosted UI. It reads the stack's
// outputs as `sam list stack-outputs --output json` prints them:
//
//	sam list stack-outputs --stack-name brightrun --output json > outputs.json
//	go run ./tools/consolepublish -outputs outputs.json
//
// Credentials and region come from the environment, as for the AWS CLI.
// Objects of an earlier publish that this one no longer has are deleted.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/brightrun/brightrun/console"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "consolepublish:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("consolepublish", flag.ContinueOnError)
	outputsPath := fs.String("outputs", "", "the stack's outputs, as `sam list stack-outputs --output json` prints them (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *outputsPath == "" {
		return errors.New("-outputs is required (sam list stack-outputs --stack-name NAME --output json > outputs.json)")
	}
	raw, err := os.ReadFile(*outputsPath)
	if err != nil {
		return err
	}
	site, err := Plan(raw)
	if err != nil {
		return err
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if err := Publish(ctx, client, site, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the console is at %s\n", site.URL)
	return nil
}

// Site is what a publish writes: the files, into Bucket, for the console
// at URL.
type Site struct {
	Bucket string
	URL    string
	Files  []console.File
}

// output is one entry of `sam list stack-outputs --output json`.
type output struct {
	OutputKey   string
	OutputValue string
}

// Plan reads the stack's outputs and builds the site: the console signs in
// through the hosted UI and calls the API at ApiUrl.
func Plan(outputsJSON []byte) (*Site, error) {
	var outs []output
	if err := json.Unmarshal(outputsJSON, &outs); err != nil {
		return nil, fmt.Errorf("the stack's outputs: %w", err)
	}
	v := map[string]string{}
	for _, o := range outs {
		v[o.OutputKey] = o.OutputValue
	}
	var missing []string
	for _, k := range []string{"ApiUrl", "ConsoleUrl", "ConsoleBucketName", "ConsoleUserPoolClientId", "ConsoleSignInDomain"} {
		if v[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the stack's outputs lack %s (a stack deployed with JwtIssuer has no user pool of its own: the console signs in with the stack's Cognito pool only)", strings.Join(missing, ", "))
	}
	cfg := console.Config{
		APIBase: strings.TrimRight(v["ApiUrl"], "/"),
		Auth:    console.AuthCognito,
		Cognito: &console.Cognito{Domain: strings.TrimRight(v["ConsoleSignInDomain"], "/"), ClientID: v["ConsoleUserPoolClientId"], RedirectURI: v["ConsoleUrl"]},
	}
	return &Site{Bucket: v["ConsoleBucketName"], URL: v["ConsoleUrl"], Files: console.Site(cfg)}, nil
}

// objectStore is what Publish needs of S3.
type objectStore interface {
	PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	ListObjectsV2(context.Context, *s3.ListObjectsV2Input, ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Publish writes every file (no-cache: browsers revalidate with the ETag),
// index.html last so that a new page never loads old modules' absence,
// then deletes the objects the site no longer has.
func Publish(ctx context.Context, s3c objectStore, site *Site, stdout io.Writer) error {
	keep := map[string]bool{}
	files := append([]console.File(nil), site.Files...)
	for i, f := range files {
		if f.Key == "index.html" {
			files = append(append(files[:i:i], files[i+1:]...), f)
			break
		}
	}
	for _, f := range files {
		keep[f.Key] = true
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(site.Bucket), Key: aws.String(f.Key), Body: bytes.NewReader(f.Body),
			ContentType: aws.String(f.ContentType), CacheControl: aws.String("no-cache"),
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", f.Key, err)
		}
		fmt.Fprintf(stdout, "uploaded %-40s %7d bytes\n", f.Key, len(f.Body))
	}
	p := s3.NewListObjectsV2Paginator(s3c, &s3.ListObjectsV2Input{Bucket: aws.String(site.Bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list the bucket: %w", err)
		}
		for _, o := range page.Contents {
			if keep[aws.ToString(o.Key)] {
				continue
			}
			if _, err := s3c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(site.Bucket), Key: o.Key}); err != nil {
				return fmt.Errorf("delete %s: %w", aws.ToString(o.Key), err)
			}
			fmt.Fprintf(stdout, "deleted  %s (no longer part of the console)\n", aws.ToString(o.Key))
		}
	}
	return nil
}
