// Package awsapp wires the AWS adapters from environment variables, for the
// Lambda functions and for the local stack's BRIGHTRUN_BACKEND=aws. The
// variable names are the ones template.yaml sets; a missing one is a clear
// start-up error naming it. Each secret holds one value and is read only
// by the functions whose parts need it, so that a function's role can be
// kept from the others (template.yaml; infra/leastprivilege_test.go).
package awsapp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/brightrun/brightrun/shared/catalog"
	"github.com/brightrun/brightrun/shared/chat"
	"github.com/brightrun/brightrun/shared/dispatch"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/httpapi"
	"github.com/brightrun/brightrun/shared/ingest"
	"github.com/brightrun/brightrun/shared/netguard"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/reconcile"
	"github.com/brightrun/brightrun/shared/runpod"
	"github.com/brightrun/brightrun/shared/s3blob"
	"github.com/brightrun/brightrun/shared/services"
	"github.com/brightrun/brightrun/shared/sqsqueue"
	"github.com/brightrun/brightrun/shared/webhooks"
)

// The environment variables template.yaml sets.
const (
	EnvTable      = "BRIGHTRUN_TABLE"
	EnvBucket     = "BRIGHTRUN_BUCKET"
	EnvQueueURL   = "BRIGHTRUN_QUEUE_URL"
	EnvDLQURL     = "BRIGHTRUN_DEAD_LETTER_URL"
	EnvPublicURL  = "BRIGHTRUN_PUBLIC_URL"
	EnvRunPodURL  = "BRIGHTRUN_RUNPOD_URL"
	EnvEndpointID = "RUNPOD_ENDPOINT_ID"
	// The secrets, one value each, named by ARN: a function's role may
	// read only the ones its parts need.
	EnvRunPodKeyARN      = "BRIGHTRUN_RUNPOD_API_KEY_ARN"  // GPU
	EnvCallbackMasterARN = "BRIGHTRUN_CALLBACK_MASTER_ARN" // Callbacks
	EnvCursorKeyARN      = "BRIGHTRUN_CURSOR_KEY_ARN"      // Cursors
	// Imports: the import queue, and the buckets and prefixes users may
	// import from ("bucket/prefix,..."; empty: none).
	EnvImportQueueURL   = "BRIGHTRUN_IMPORT_QUEUE_URL"
	EnvImportS3Prefixes = "BRIGHTRUN_IMPORT_S3_PREFIXES"
)

// EnvWebhookQueueURL is the webhook queue: outbound events and their
// deliveries (part Webhooks).
const EnvWebhookQueueURL = "BRIGHTRUN_WEBHOOK_QUEUE_URL"

// Part is one piece a function needs.
type Part uint

// The parts.
const (
	// Store is DynamoDB. Its list cursors are signed with a key made at
	// random for this process, unless Cursors is asked for too: a
	// function that pages through a list only within one call (reconcile)
	// or lists nothing needs no shared key, and so no secret.
	Store Part = 1 << iota
	// Cursors: the store's list cursors go out to clients and come back
	// to any instance, so they are signed with the cursor key secret that
	// every instance shares (BRIGHTRUN_CURSOR_KEY_ARN). Needs Store.
	Cursors
	Blobs // S3
	Queue // SQS
	// GPU is RunPod's job API, with the RunPod API key secret
	// (BRIGHTRUN_RUNPOD_API_KEY_ARN).
	GPU
	// Callbacks is the callback master secret (BRIGHTRUN_CALLBACK_MASTER_ARN):
	// worker callback signatures and RunPod webhook tokens derive from it.
	Callbacks
	Public // the API's public base URL (the dispatcher writes it into job specs)
	// Imports is the import queue (BRIGHTRUN_IMPORT_QUEUE_URL) that the
	// API sends import requests to, with ImportSources.
	Imports
	// ImportSources is the allowed S3 import prefixes
	// (BRIGHTRUN_IMPORT_S3_PREFIXES; empty: none), read through the S3
	// client when Blobs is asked for too (the import function).
	ImportSources
	// Webhooks is the webhook queue (BRIGHTRUN_WEBHOOK_QUEUE_URL): a
	// function that changes a job or a dataset publishes its events
	// there, and the deliver function delivers them.
	Webhooks
)

// MinCallbackMasterLen is the shortest callback master secret Load accepts.
const MinCallbackMasterLen = 32

// App is what a function was wired with; the parts it did not ask for are nil.
type App struct {
	Config         aws.Config
	Store          *dynamo.Store
	Blobs          *s3blob.Blobs
	Queue          *sqsqueue.Queue
	WebhookQueue   *sqsqueue.Queue
	GPU            *runpod.Client
	Catalog        *catalog.Catalog
	CallbackSecret []byte // nil without Callbacks
	PublicURL      string
	// Fairness is fair dispatch's settings (pipeline.FairnessFromEnv; nil
	// when turned off), used by the dispatch and reconcile functions.
	Fairness *pipeline.Fairness
	// ImportQueue (nil without Imports) and ImportS3Prefixes (nil
	// without Imports or ImportSources).
	ImportQueue      *sqsqueue.Queue
	ImportS3Prefixes []pipeline.S3Prefix
	// Clients, for tests and set-up.
	DynamoDB *dynamodb.Client
	S3       *s3.Client
	SQS      *sqs.Client
}

// secret is one value held in Secrets Manager and the part that reads it.
type secret struct {
	part  Part
	env   string
	what  string
	check func(v string) error
}

// secrets are the values Load reads, each from a secret of its own.
var secrets = []secret{
	{Cursors, EnvCursorKeyARN, "cursor key", func(v string) error {
		if len(v) < dynamo.MinCursorKeyLen {
			return fmt.Errorf("must be at least %d characters", dynamo.MinCursorKeyLen)
		}
		return nil
	}},
	{GPU, EnvRunPodKeyARN, "RunPod API key", func(v string) error {
		switch {
		case v == "":
			return errors.New("is empty: put the RunPod API key in it (docs/deploy.md, step 7)")
		case strings.HasPrefix(v, "{"):
			return errors.New("holds a JSON document: it must hold the RunPod API key itself (docs/deploy.md, step 7)")
		}
		return nil
	}},
	{Callbacks, EnvCallbackMasterARN, "callback master", func(v string) error {
		if len(v) < MinCallbackMasterLen {
			return fmt.Errorf("must be at least %d characters", MinCallbackMasterLen)
		}
		return nil
	}},
}

// Load builds the parts from the environment read by getenv. AWS endpoints
// and credentials come from the SDK's standard sources (AWS_ENDPOINT_URL_*
// and the like), so the same code talks to AWS or to an emulator. It reads
// only the secrets of the parts asked for, and names every missing
// variable, and every secret it cannot use, at once.
func Load(ctx context.Context, getenv func(string) string, parts Part) (*App, error) {
	if parts&Cursors != 0 && parts&Store == 0 {
		return nil, errors.New("awsapp: the Cursors part needs the Store part")
	}
	missing := map[string]bool{}
	need := func(name string) string {
		v := getenv(name)
		if v == "" {
			missing[name] = true
		}
		return v
	}
	var table, bucket, queueURL, webhookQueueURL, publicURL, endpoint, importQueueURL string
	if parts&Store != 0 {
		table = need(EnvTable)
	}
	if parts&Blobs != 0 {
		bucket = need(EnvBucket)
	}
	if parts&Queue != 0 {
		queueURL = need(EnvQueueURL)
	}
	if parts&Webhooks != 0 {
		webhookQueueURL = need(EnvWebhookQueueURL)
	}
	if parts&GPU != 0 {
		endpoint = need(EnvEndpointID)
	}
	if parts&Public != 0 {
		publicURL = need(EnvPublicURL)
	}
	var prefixes []pipeline.S3Prefix
	if parts&Imports != 0 {
		importQueueURL = need(EnvImportQueueURL)
	}
	if parts&(Imports|ImportSources) != 0 {
		var err error
		if prefixes, err = pipeline.ParseS3Prefixes(getenv(EnvImportS3Prefixes)); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvImportS3Prefixes, err)
		}
	}
	arns := map[Part]string{}
	for _, s := range secrets {
		if parts&s.part != 0 {
			arns[s.part] = need(s.env)
		}
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
	app := &App{Config: cfg, PublicURL: strings.TrimRight(publicURL, "/"), ImportS3Prefixes: prefixes}
	if app.Fairness, err = pipeline.FairnessFromEnv(getenv); err != nil {
		return nil, err
	}
	if app.Catalog, err = catalog.FromEnv(getenv); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	values := map[Part]string{}
	if len(arns) > 0 {
		if values, err = readSecrets(ctx, secretsmanager.NewFromConfig(cfg), arns); err != nil {
			return nil, err
		}
	}
	if parts&Callbacks != 0 {
		app.CallbackSecret = []byte(values[Callbacks])
	}
	if parts&Store != 0 {
		cursorKey := []byte(values[Cursors])
		if parts&Cursors == 0 {
			// No cursor of this process leaves it: a key of its own
			// will do, and the function's role needs no secret for it.
			cursorKey = make([]byte, dynamo.MinCursorKeyLen)
			if _, err := rand.Read(cursorKey); err != nil {
				return nil, err
			}
		}
		app.DynamoDB = dynamodb.NewFromConfig(cfg)
		if app.Store, err = dynamo.New(app.DynamoDB, dynamo.Options{Table: table, CursorKey: cursorKey}); err != nil {
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
	if parts&Imports != 0 {
		if app.SQS == nil {
			app.SQS = sqs.NewFromConfig(cfg)
		}
		if app.ImportQueue, err = sqsqueue.New(app.SQS, sqsqueue.Options{QueueURL: importQueueURL}); err != nil {
			return nil, err
		}
	}
	if parts&Webhooks != 0 {
		if app.SQS == nil {
			app.SQS = sqs.NewFromConfig(cfg)
		}
		if app.WebhookQueue, err = sqsqueue.New(app.SQS, sqsqueue.Options{QueueURL: webhookQueueURL}); err != nil {
			return nil, err
		}
	}
	if parts&GPU != 0 {
		if app.GPU, err = runpod.New(getenv(EnvRunPodURL), endpoint, values[GPU], runpod.WithLogger(slog.Default())); err != nil {
			return nil, err
		}
	}
	return app, nil
}

// readSecrets reads the secrets at arns (by part) at once and checks each
// value; the error names every one that cannot be used.
func readSecrets(ctx context.Context, sm *secretsmanager.Client, arns map[Part]string) (map[Part]string, error) {
	values := make([]string, len(secrets))
	errs := make([]error, len(secrets))
	var wg sync.WaitGroup
	for i, s := range secrets {
		arn, ok := arns[s.part]
		if !ok {
			continue
		}
		wg.Go(func() {
			out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
			var notFound *smtypes.ResourceNotFoundException
			switch {
			case errors.As(err, &notFound):
				// Also the answer for a secret created without a value,
				// as the RunPod API key's is until the operator sets it.
				hint := ""
				if s.part == GPU {
					hint = " put the key in it after deploying (docs/deploy.md, step 7):"
				}
				errs[i] = fmt.Errorf("the %s secret %s (%s) has no value:%s %w", s.what, arn, s.env, hint, err)
			case err != nil:
				errs[i] = fmt.Errorf("read the %s secret %s (%s): %w", s.what, arn, s.env, err)
			case out.SecretString == nil:
				errs[i] = fmt.Errorf("the %s secret %s (%s) holds no text", s.what, arn, s.env)
			default:
				v := strings.TrimSpace(*out.SecretString)
				if err := s.check(v); err != nil {
					errs[i] = fmt.Errorf("the %s secret %s (%s) %w", s.what, arn, s.env, err)
				}
				values[i] = v
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := map[Part]string{}
	for i, s := range secrets {
		if _, ok := arns[s.part]; ok {
			out[s.part] = values[i]
		}
	}
	return out, nil
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
	if a.S3 != nil {
		p.S3Sources = s3blob.Sources{Client: a.S3}
	}
	if a.WebhookQueue != nil {
		p.WebhookQueue, p.WebhookPolicy = a.WebhookQueue, netguard.Cloud
	}
	o.API.ImportS3Prefixes = a.ImportS3Prefixes // the cloud's network policy: netguard.Cloud, the zero value
	svc := services.Build(p, o)
	if a.ImportQueue != nil {
		svc.API.Imports = ingest.ImportQueue{Queue: a.ImportQueue}
	}
	return svc
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
	if a.WebhookQueue != nil {
		p.WebhookQueue, p.WebhookPolicy = a.WebhookQueue, netguard.Cloud
	}
	return services.Build(p, services.Options{}).Validator, nil
}

// Dispatcher submits queued jobs (the dispatch function). maxAttempts
// must equal the queue's redrive maxReceiveCount.
func (a *App) Dispatcher(maxAttempts int) *dispatch.Dispatcher {
	return a.Services(services.Options{MaxDispatchAttempts: maxAttempts, Fairness: a.Fairness}).Dispatcher
}

// Importer copies imported datasets from their sources (the import
// function); the S3 upload event then has them validated. maxAttempts
// must equal the import queue's redrive maxReceiveCount.
func (a *App) Importer(maxAttempts int) *ingest.Importer {
	return a.Services(services.Options{MaxImportAttempts: maxAttempts}).Importer
}

// Webhooks delivers outbound events (the deliver function); nil
// without the Webhooks part.
func (a *App) Webhooks() *webhooks.Service {
	return a.Services(services.Options{}).Webhooks
}

// Reconciler repairs jobs (the reconcile function).
func (a *App) Reconciler() *reconcile.Reconciler {
	return a.Services(services.Options{Fairness: a.Fairness}).Reconciler
}
