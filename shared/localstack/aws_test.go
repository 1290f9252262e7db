package localstack_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/brightrun/brightrun/shared/awsapp"
	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/localstack"
	"github.com/brightrun/brightrun/shared/runpodemu"
	"github.com/brightrun/brightrun/shared/s3blob"
	"github.com/brightrun/brightrun/shared/sqsqueue"
)

// awsEnvironment creates a table, queues, a bucket and the secrets on the
// emulators and points the environment at them, as template.yaml points
// the functions at the real services.
func awsEnvironment(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	moto, gw := awstest.Moto(t), awstest.VersityGW(t)
	table, queue, bucket := awstest.UniqueName("brightrun"), awstest.UniqueName("jobs"), awstest.UniqueName("datasets")
	if err := dynamo.CreateTable(ctx, dynamodb.NewFromConfig(moto.Config), table); err != nil {
		t.Fatal(err)
	}
	qs, err := sqsqueue.CreateQueues(ctx, sqs.NewFromConfig(moto.Config), queue, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := s3blob.CreateBucket(ctx, s3.NewFromConfig(gw.Config, func(o *s3.Options) { o.UsePathStyle = true }), bucket); err != nil {
		t.Fatal(err)
	}
	sm := secretsmanager.NewFromConfig(moto.Config)
	secret := func(value string) string {
		out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(awstest.UniqueName("brightrun")), SecretString: aws.String(value)})
		if err != nil {
			t.Fatal(err)
		}
		return *out.ARN
	}
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_DYNAMODB": moto.Endpoint, "AWS_ENDPOINT_URL_SQS": moto.Endpoint,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.Endpoint, "AWS_ENDPOINT_URL_S3": gw.Endpoint,
		"AWS_ACCESS_KEY_ID": awstest.AccessKeyID, "AWS_SECRET_ACCESS_KEY": awstest.SecretAccessKey, "AWS_REGION": awstest.Region,
		"AWS_REQUEST_CHECKSUM_CALCULATION": "when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
		"BRIGHTRUN_S3_PATH_STYLE": "1", awsapp.EnvTable: table, awsapp.EnvBucket: bucket,
		awsapp.EnvQueueURL: qs.QueueURL, awsapp.EnvDLQURL: qs.DeadLetterURL,
		awsapp.EnvCursorKeyARN: secret(strings.Repeat("c", 40)), awsapp.EnvCallbackMasterARN: secret(strings.Repeat("s", 40)),
	} {
		t.Setenv(k, v)
	}
}

// The whole pipeline over the DynamoDB, SQS and S3 protocols: upload,
// validation, job, dispatch, emulated training, callbacks, adapter.
func TestTheAWSBackendRunsAJobToAnAdapter(t *testing.T) {
	awsEnvironment(t)
	s, err := localstack.Open(localstack.Config{
		Addr: "127.0.0.1:0", DataDir: t.TempDir(), DevTokens: "dev:dev-token", Backend: localstack.BackendAWS, Getenv: os.Getenv,
		Log:                slog.New(slog.NewTextHandler(io.Discard, nil)),
		Emulator:           runpodemu.Config{StepsPerSecond: 200},
		DispatchVisibility: time.Second, ReconcileEvery: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())

	ds := readyDataset(t, s)
	j := createJob(t, s, ds, `,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":2}`)
	waitFor(t, 60*time.Second, func() bool { j = getJob(t, s, j.ID); return j.Status == "completed" || j.Status == "failed" }, "the job to end")
	if j.Status != "completed" {
		t.Fatalf("job over the AWS backend ended %s %+v, want completed", j.Status, j.Error)
	}
	var arts struct {
		Artifacts []struct{ Name, SHA256 string }
	}
	call(t, "GET", s.URL()+"/v1/jobs/"+j.ID+"/artifacts", "", &arts)
	if len(arts.Artifacts) != 2 {
		t.Errorf("artifacts = %+v, want the adapter's two files", arts.Artifacts)
	}
	var list struct{ Datasets []struct{ ID string } }
	call(t, "GET", s.URL()+"/v1/datasets", "", &list)
	if len(list.Datasets) != 1 || list.Datasets[0].ID != ds {
		t.Errorf("datasets = %+v, want the one uploaded", list.Datasets)
	}
}
