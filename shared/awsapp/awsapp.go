// Package awsapp wires the AWS adapters from environment variables, for the
// Lambda functions and for the local stack's BRIGHTRUN_BACKEND=aws. The
// variable names are the ones template.yaml sets; a missing one is a clear
// start-up error naming it.
package awsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/s3blob"
	"github.com/brightrun/brightrun/shared/services"
	"github.com/brightrun/brightrun/shared/sqsqueue"
)

// The environment variables template.yaml sets.
const (
	EnvTable      = "BRIGHTRUN_TABLE"
	EnvBucket     = "BRIGHTRUN_BUCKET"
	EnvQueueURL   = "BRIGHTRUN_QUEUE_URL"
	EnvDLQURL     = "BRIGHTRUN_DEAD_LETTER_URL"
	EnvPublicURL  = "BRIGHTRUN_PUBLIC_URL"
	EnvSecretsARN = "BRIGHTRUN_SECRETS_ARN"
	EnvRunPodURL  = "BRIGHTRUN_RUNPOD_URL"
	EnvEndpointID = "RUNPOD_ENDPOINT_ID"
)

// Part is one piece a function needs.
type Part uint

// The parts.
const (
	Store   Part = 1 << iota // DynamoDB (needs the cursor key secret)
	Blobs                    // S3
	Queue                    // SQS
	GPU                      // RunPod (needs the API key secret)
	Secrets                  // the callback master secret
	Public                   // the API's public base URL (the dispatcher writes it into job specs)
)

// Secret is the JSON document held in Secrets Manager at BRIGHTRUN_SECRETS_ARN.
type Secret struct {
	// CursorKey signs list cursors (at least 32 bytes).
	CursorKey string `json:"cursor_key"`
	// CallbackSecret is the master secret of worker callback signatures
	// and RunPod webhook tokens.
	CallbackSecret string `json:"callback_secret"`
	// RunPodAPIKey authenticates RunPod's job API.
	RunPodAPIKey string `json:"runpod_api_key"`
}

// App is what a function was wired with; the parts it did not ask for are nil.
type App struct {
	Config         aws.Config
	Store          *dynamo.Store
	Blobs          *s3blob.Blobs
	Queue          *sqsqueue.Queue
	GPU            *runpod.Client
	Catalog        *catalog.Catalog
	CallbackSecret []byte
	PublicURL      string
	// Clients, for tests and set-up.
	DynamoDB *dynamodb.Client
	S3       *s3.Client
	SQS      *sqs.Client
}

// Load builds the parts from the environment read by getenv. AWS endpoints
// and credentials come from the SDK's standard sources (AWS_ENDPOINT_URL_*
// and the like), so the same code talks to AWS or to an emulator.
func Load(ctx context.Context, getenv func(string) string, parts Part) (*App, error) {
	missing := map[string]bool{}
	need := func(name string) string {
		v := getenv(name)
		if v == "" {
			missing[name] = true
		}
		return v
	}
	var table, bucket, queueURL, publicURL, secretsARN, endpoint string
	if parts&Store != 0 {
		table = need(EnvTable)
	}
	if parts&Blobs != 0 {
		bucket = need(EnvBucket)
	}
	if parts&Queue != 0 {
		queueURL = need(EnvQueueURL)
	}
	if parts&GPU != 0 {
		endpoint = need(EnvEndpointID)
	}
	if parts&Public != 0 {
		publicURL = need(EnvPublicURL)
	}
	if parts&(Store|GPU|Secrets) != 0 {
		secretsARN = need(EnvSecretsARN)
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(missing))
		for n := range missing {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("missing environment variables: %s", strings.Join(names, ", "))
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	app := &App{Config: cfg, PublicURL: strings.TrimRight(publicURL, "/")}
	if app.Catalog, err = catalog.FromEnv(getenv); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var secret Secret
	if secretsARN != "" {
		if secret, err = loadSecret(ctx, secretsmanager.NewFromConfig(cfg), secretsARN, parts); err != nil {
			return nil, err
		}
		app.CallbackSecret = []byte(secret.CallbackSecret)
	}
	if parts&Store != 0 {
		app.DynamoDB = dynamodb.NewFromConfig(cfg)
		if app.Store, err = dynamo.New(app.DynamoDB, dynamo.Options{Table: table, CursorKey: []byte(secret.CursorKey)}); err != nil {
			return nil, err
		}
	}
	if parts&Blobs != 0 {
		app.S3 = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = getenv("BRIGHTRUN_S3_PATH_STYLE") == "1" })
		if app.Blobs, err = s3blob.New(app.S3, s3blob.Options{Bucket: bucket}); err != nil {
			return nil, err
		}
	}
	if parts&Queue != 0 {
		app.SQS = sqs.NewFromConfig(cfg)
		if app.Queue, err = sqsqueue.New(app.SQS, sqsqueue.Options{QueueURL: queueURL, DeadLetterURL: getenv(EnvDLQURL)}); err != nil {
			return nil, err
		}
	}
	if parts&GPU != 0 {
		if app.GPU, err = runpod.New(getenv(EnvRunPodURL), endpoint, secret.RunPodAPIKey, runpod.WithLogger(slog.Default())); err != nil {
			return nil, err
		}
	}
	return app, nil
}

// loadSecret reads and checks the secret document.
func loadSecret(ctx context.Context, sm *secretsmanager.Client, arn string, parts Part) (Secret, error) {
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return Secret{}, fmt.Errorf("read secret %s: %w", arn, err)
	}
	var s Secret
	if out.SecretString == nil || json.Unmarshal([]byte(*out.SecretString), &s) != nil {
		return Secret{}, fmt.Errorf("secret %s must be a JSON object with cursor_key, callback_secret and runpod_api_key", arn)
	}
	var errs []error
	if parts&Store != 0 && len(s.CursorKey) < dynamo.MinCursorKeyLen {
		errs = append(errs, fmt.Errorf("cursor_key must be at least %d characters", dynamo.MinCursorKeyLen))
	}
	if parts&(GPU|Secrets) != 0 && len(s.CallbackSecret) < 32 {
		errs = append(errs, errors.New("callback_secret must be at least 32 characters"))
	}
	if parts&GPU != 0 && s.RunPodAPIKey == "" {
		errs = append(errs, errors.New("runpod_api_key is required"))
	}
	if len(errs) > 0 {
		return Secret{}, fmt.Errorf("secret %s: %w", arn, errors.Join(errs...))
	}
	return s, nil
}

// Services builds the services over the loaded parts (services.Build,
// the wiring the local stack shares); the parts a function did not ask
// for are left out.
func (a *App) Services(o services.Options) *services.Services {
	p := services.Ports{Auth: httpapi.APIGatewayJWT{}, Catalog: a.Catalog, CallbackSecret: a.CallbackSecret, PublicURL: a.PublicURL}
	if a.Store != nil {
		p.Store = a.Store
	}
	if a.Blobs != nil {
		p.Blobs = a.Blobs
	}
	if a.Queue != nil {
		p.Queue = a.Queue
	}
	if a.GPU != nil {
		p.GPU = a.GPU
	}
	return services.Build(p, o)
}

// API is the HTTP API over the loaded parts, authenticating with the JWT
// claims API Gateway verified.
func (a *App) API() *httpapi.Server { return a.Services(services.Options{}).API }

// Validator validates uploads (the validate function).
func (a *App) Validator() (*ingest.Validator, error) {
	counter, err := chat.Qwen3Counter()
	if err != nil {
		return nil, err
	}
	p := services.Ports{Store: a.Store, Blobs: a.Blobs, Catalog: a.Catalog, Counter: counter}
	return services.Build(p, services.Options{}).Validator, nil
}

// Dispatcher submits queued jobs (the dispatch function). maxAttempts
// must equal the queue's redrive maxReceiveCount.
func (a *App) Dispatcher(maxAttempts int) *dispatch.Dispatcher {
	return a.Services(services.Options{MaxDispatchAttempts: maxAttempts}).Dispatcher
}

// Reconciler repairs jobs (the reconcile function).
func (a *App) Reconciler() *reconcile.Reconciler {
	return a.Services(services.Options{}).Reconciler
}
