package infra_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/brightrun/brightrun/infra"
	"github.com/brightrun/brightrun/infra/iamproof"
	"github.com/brightrun/brightrun/shared/awstest"
	"github.com/brightrun/brightrun/shared/dynamo"
	"github.com/brightrun/brightrun/shared/pipeline"
	"github.com/brightrun/brightrun/shared/runpodemu"
	"github.com/brightrun/brightrun/shared/s3blob"
	"github.com/brightrun/brightrun/shared/sqsqueue"
)

func TestMain(m *testing.M) { awstest.Main(m) }

// proofAccount is moto's default account, in which it creates everything.
var proofAccount = iamproof.Account{Partition: "aws", Region: awstest.Region, ID: "123456789012"}

// iamUser is the IAM user that stands for one function's role.
type iamUser struct {
	Name              string
	AccessKey, Secret string
	Policies          []iamproof.NamedPolicy
}

// stack is template.yaml deployed on the emulators: its table, queues,
// bucket and secrets, one IAM user per function carrying exactly the
// function's policies, and each function's bootstrap running with its
// template environment and its own user's credentials behind a gateway
// that enforces the policies.
type stack struct {
	t      *testing.T
	tmpl   iamproof.Template
	scope  *iamproof.Scope
	moto   *awstest.Emulator
	gw     *iamproof.Gateway
	gwURL  string
	bins   string
	front  *apiFront
	api    string // the HTTP API's base URL
	runpod *runpodemu.Emulator
	users  map[string]iamUser     // by logical id
	hosts  map[string]*lambdaHost // the functions, with their own credentials
	queue  sqsqueue.Options
	hooks  string // the webhook queue's URL
	table  string
	bucket string
	// sources is the bucket users may import from (its exports/ prefix:
	// the ImportS3Prefixes parameter).
	sources     string
	importQueue string
	secrets     map[string]string    // secret name or ARN -> ARN
	second      map[string][2]string // a neighbour's second access key and secret, by logical id
	lent        map[string]iamUser   // a neighbour lent another function's secrets, by "<neighbour> <function>"
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func deployStack(t *testing.T) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{t: t, moto: awstest.Moto(t), users: map[string]iamUser{}, hosts: map[string]*lambdaHost{}, secrets: map[string]string{}}
	data, err := os.ReadFile(filepath.Join(root, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.tmpl, err = iamproof.ParseTemplate(data); err != nil {
		t.Fatalf("parse template.yaml: %v", err)
	}
	s.bins = buildBootstraps(t)

	// RunPod, and the HTTP API the worker and RunPod call back.
	runpodKey := "rp-" + randomHex(8)
	// A job named by legacyJobKey runs on a worker image older than URL
	// requests: the URLs dispatch minted are what it uses.
	legacy := runpodemu.FaultsByJobID(map[string]runpodemu.Fault{pipeline.IdempotentJobID("alice", legacyJobKey): {NoURLRequests: true}})
	if s.runpod, err = runpodemu.New(runpodemu.Config{APIKey: runpodKey, EndpointID: "proofendpoint", StepsPerSecond: 400, Workers: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), WebhookRetryInterval: 200 * time.Millisecond, Faults: legacy}); err != nil {
		t.Fatal(err)
	}
	rp := httptest.NewServer(s.runpod)
	t.Cleanup(func() { rp.Close(); s.runpod.Close() })
	s.front = newAPIFront(s.routes())
	front := httptest.NewServer(s.front)
	t.Cleanup(front.Close)
	s.api = front.URL

	// Parameters as an operator would deploy them, pointing at the emulators.
	params := map[string]string{}
	for name, p := range s.tmpl["Parameters"].(map[string]any) {
		if d, ok := iamproof.Dig(p, "Default").(string); ok {
			params[name] = d
		} else if d, ok := iamproof.Dig(p, "Default").(float64); ok {
			params[name] = fmt.Sprint(d)
		}
	}
	params["RunPodEndpointId"], params["RunPodApiUrl"], params["PublicBaseUrl"] = "proofendpoint", rp.URL+"/v2", s.api
	s.sources = "brightrun-proof-sources-" + randomHex(4)
	params["ImportS3Prefixes"] = s.sources + "/exports/"
	conditions, _ := s.tmpl["Conditions"].(map[string]any)
	stackUUID := randomHex(4) + "-0000-4000-8000-" + randomHex(6)
	s.scope = &iamproof.Scope{Account: proofAccount, StackName: "brightrun-proof",
		StackID: "arn:aws:cloudformation:us-east-1:123456789012:stack/brightrun-proof/" + stackUUID,
		Params:  params, Refs: map[string]string{}, Attrs: map[string]map[string]string{}, Conditions: conditions}
	resources := s.tmpl["Resources"].(map[string]any)
	for name := range resources {
		s.scope.Refs[name] = name + "-proof" // what nothing of the proof reaches (the API's id in URLs, log groups)
	}

	// The resources the functions use, as the template declares them.
	cfg := s.moto.Config
	table := "brightrun-proof-Table-" + randomHex(4)
	if err := dynamo.CreateTable(ctx, dynamodb.NewFromConfig(cfg), table); err != nil {
		t.Fatalf("create the table: %v", err)
	}
	s.scope.Refs["Table"] = table
	s.scope.Attrs["Table"] = map[string]string{"Arn": fmt.Sprintf("arn:aws:dynamodb:%s:%s:table/%s", proofAccount.Region, proofAccount.ID, table)}

	sqsClient := sqs.NewFromConfig(cfg)
	queueName := "brightrun-proof-JobsQueue-" + randomHex(4)
	if s.queue, err = sqsqueue.CreateQueues(ctx, sqsClient, queueName, 5); err != nil {
		t.Fatalf("create the queues: %v", err)
	}
	vdlq, err := sqsClient.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("brightrun-proof-ValidateDLQ-" + randomHex(4))})
	if err != nil {
		t.Fatal(err)
	}
	iqs, err := sqsqueue.CreateQueues(ctx, sqsClient, "brightrun-proof-ImportQueue-"+randomHex(4), 3)
	if err != nil {
		t.Fatalf("create the import queues: %v", err)
	}
	s.importQueue = iqs.QueueURL
	hooks, err := sqsqueue.CreateQueues(ctx, sqsClient, "brightrun-proof-WebhookQueue-"+randomHex(4), 30)
	if err != nil {
		t.Fatalf("create the webhook queues: %v", err)
	}
	s.hooks, s.table = hooks.QueueURL, table
	for id, u := range map[string]string{"JobsQueue": s.queue.QueueURL, "JobsDeadLetterQueue": s.queue.DeadLetterURL, "ValidateDeadLetterQueue": *vdlq.QueueUrl,
		"ImportQueue": iqs.QueueURL, "ImportDeadLetterQueue": iqs.DeadLetterURL,
		"WebhookQueue": hooks.QueueURL, "WebhookDeadLetterQueue": hooks.DeadLetterURL} {
		name := u[strings.LastIndex(u, "/")+1:]
		s.scope.Refs[id] = u
		s.scope.Attrs[id] = map[string]string{"Arn": fmt.Sprintf("arn:aws:sqs:%s:%s:%s", proofAccount.Region, proofAccount.ID, name), "QueueName": name}
	}

	name, err := s.scope.Resolve(iamproof.Dig(resources, "DatasetBucket", "Properties", "BucketName"))
	if err != nil {
		t.Fatalf("DatasetBucket's name: %v", err)
	}
	s.bucket = name.(string)
	if err := s3blob.CreateBucket(ctx, s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), s.bucket); err != nil {
		t.Fatal(err)
	}
	// The operator's training-files bucket, with a file under the
	// allowed prefix and one outside it.
	admin := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if err := s3blob.CreateBucket(ctx, admin, s.sources); err != nil {
		t.Fatal(err)
	}
	sample, err := os.ReadFile(filepath.Join(root, "testdata", "datasets", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for key, body := range map[string][]byte{"exports/sample.jsonl": sample, "private/sample.jsonl": sample, "exports/empty.jsonl": nil} {
		if _, err := admin.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.sources), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			t.Fatal(err)
		}
	}
	s.scope.Refs["DatasetBucket"] = s.bucket
	s.scope.Attrs["DatasetBucket"] = map[string]string{"Arn": "arn:aws:s3:::" + s.bucket}

	s.createSecrets(ctx, runpodKey)

	// The gateway that enforces each caller's policies.
	upstream, _ := url.Parse(s.moto.Endpoint)
	s.gw = iamproof.NewGateway(upstream, proofAccount, func(id string) string {
		if arn, ok := s.secrets[id]; ok {
			return arn
		}
		return id
	})
	gw := httptest.NewServer(s.gw)
	t.Cleanup(gw.Close)
	s.gwURL = gw.URL

	// One IAM user per function, with the function's policies; the gateway
	// evaluates the documents IAM stored.
	for _, id := range iamproof.Functions(s.tmpl) {
		policies, err := iamproof.FunctionPolicies(s.tmpl, id, s.scope)
		if err != nil {
			t.Fatalf("%s's policies: %v", id, err)
		}
		s.users[id] = s.createUser(id, policies)
	}
	for _, id := range iamproof.Functions(s.tmpl) {
		s.hosts[id] = s.startFunction(id, id, s.users[id])
		s.front.serve(id, s.hosts[id])
	}
	return s
}

// createSecrets creates the template's secrets with the values
// CloudFormation would generate. The one it creates empty is the RunPod
// API key's, which the operator puts in after deploying (docs/deploy.md,
// step 7): the proof does the same with the emulator's key.
func (s *stack) createSecrets(ctx context.Context, runpodKey string) {
	t := s.t
	sm := secretsmanager.NewFromConfig(s.moto.Config)
	values := map[string]string{}
	resources := s.tmpl["Resources"].(map[string]any)
	var pending, empty []string
	for id, r := range resources {
		if iamproof.Dig(r, "Type") == "AWS::SecretsManager::Secret" {
			pending = append(pending, id)
		}
	}
	sort.Strings(pending)
	dynamicRef := func(v string) (string, bool) {
		for id, arn := range s.scope.Refs {
			ref := "{{resolve:secretsmanager:" + arn + ":SecretString}}"
			if val, ok := values[id]; ok && strings.Contains(v, ref) {
				v = strings.ReplaceAll(v, ref, val)
			}
		}
		return v, !strings.Contains(v, "{{resolve:")
	}
	for round := 0; len(pending) > 0; round++ {
		if round > len(resources) {
			t.Fatalf("secrets %v refer to each other in a loop", pending)
		}
		var later []string
		for _, id := range pending {
			props := iamproof.Dig(resources[id], "Properties")
			gen := iamproof.Dig(props, "GenerateSecretString")
			length := 32
			if n, ok := iamproof.Dig(gen, "PasswordLength").(float64); ok {
				length = int(n)
			}
			var value *string
			switch {
			case gen == nil && iamproof.Dig(props, "SecretString") == nil:
				empty = append(empty, id) // created without a value
			case gen == nil:
				v, err := s.scope.Resolve(iamproof.Dig(props, "SecretString"))
				if err != nil {
					t.Fatalf("%s: %v", id, err)
				}
				str, ok := dynamicRef(fmt.Sprint(v))
				if !ok {
					later = append(later, id)
					continue
				}
				value = &str
			case iamproof.Dig(gen, "SecretStringTemplate") != nil:
				v, err := s.scope.Resolve(iamproof.Dig(gen, "SecretStringTemplate"))
				if err != nil {
					t.Fatalf("%s's SecretStringTemplate: %v", id, err)
				}
				str, ok := dynamicRef(v.(string))
				if !ok {
					later = append(later, id)
					continue
				}
				doc := map[string]any{}
				if err := json.Unmarshal([]byte(str), &doc); err != nil {
					t.Fatalf("%s's SecretStringTemplate is not a JSON object: %v", id, err)
				}
				doc[iamproof.Dig(gen, "GenerateStringKey").(string)] = randomHex(length)[:length]
				b, _ := json.Marshal(doc)
				value = aws.String(string(b))
			default:
				value = aws.String(randomHex(length)[:length])
			}
			out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("brightrun-proof-" + id + "-" + randomHex(3)), SecretString: value})
			if err != nil {
				t.Fatalf("create secret %s: %v", id, err)
			}
			if value != nil {
				values[id] = *value
			}
			s.scope.Refs[id] = *out.ARN
			s.secrets[*out.ARN], s.secrets[*out.Name] = *out.ARN, *out.ARN
		}
		pending = later
	}
	if len(empty) != 1 {
		t.Fatalf("the template creates %d secrets without a value (%v); the proof knows one, the RunPod API key's, which the operator sets", len(empty), empty)
	}
	// The operator's step after deploying.
	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(s.scope.Refs[empty[0]]), SecretString: aws.String(runpodKey)}); err != nil {
		t.Fatalf("put the RunPod API key in %s: %v", empty[0], err)
	}
}

// iamQuery calls moto's IAM (Query protocol) with the emulator's
// administrator credentials.
func (s *stack) iamQuery(action string, params url.Values) []byte {
	s.t.Helper()
	params.Set("Action", action)
	params.Set("Version", "2010-05-08")
	body := params.Encode()
	req, _ := http.NewRequest(http.MethodPost, s.moto.Endpoint+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	sum := sha256.Sum256([]byte(body))
	creds, _ := s.moto.Config.Credentials.Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "iam", "us-east-1", time.Now()); err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("IAM %s: %v", action, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("IAM %s = %d %s", action, resp.StatusCode, out)
	}
	return out
}

// createUser creates the IAM user of a function with its policies (IAM
// validates each document), reads them back as IAM stored them, and gives
// the user an access key.
func (s *stack) createUser(logicalID string, policies []iamproof.NamedPolicy) iamUser {
	t := s.t
	u := iamUser{Name: "brightrun-proof-" + logicalID}
	s.iamQuery("CreateUser", url.Values{"UserName": {u.Name}})
	for _, p := range policies {
		s.iamQuery("PutUserPolicy", url.Values{"UserName": {u.Name}, "PolicyName": {p.Name}, "PolicyDocument": {p.Policy.JSON()}})
	}
	var list struct {
		Names []string `xml:"ListUserPoliciesResult>PolicyNames>member"`
	}
	if err := xml.Unmarshal(s.iamQuery("ListUserPolicies", url.Values{"UserName": {u.Name}}), &list); err != nil {
		t.Fatal(err)
	}
	for _, name := range list.Names {
		var got struct {
			Document string `xml:"GetUserPolicyResult>PolicyDocument"`
		}
		if err := xml.Unmarshal(s.iamQuery("GetUserPolicy", url.Values{"UserName": {u.Name}, "PolicyName": {name}}), &got); err != nil {
			t.Fatal(err)
		}
		doc := got.Document
		if unescaped, err := url.QueryUnescape(doc); err == nil && strings.HasPrefix(strings.TrimSpace(unescaped), "{") {
			doc = unescaped
		}
		var p iamproof.Policy
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			t.Fatalf("IAM's copy of %s/%s: %v\n%s", u.Name, name, err, doc)
		}
		u.Policies = append(u.Policies, iamproof.NamedPolicy{Name: name, Policy: p})
	}
	if len(u.Policies) != len(policies) {
		t.Fatalf("IAM holds %d policies of %s, want %d", len(u.Policies), u.Name, len(policies))
	}
	u.AccessKey, u.Secret = s.accessKey(u)
	return u
}

func (s *stack) accessKey(u iamUser) (string, string) {
	var key struct {
		ID     string `xml:"CreateAccessKeyResult>AccessKey>AccessKeyId"`
		Secret string `xml:"CreateAccessKeyResult>AccessKey>SecretAccessKey"`
	}
	if err := xml.Unmarshal(s.iamQuery("CreateAccessKey", url.Values{"UserName": {u.Name}}), &key); err != nil {
		s.t.Fatal(err)
	}
	s.gw.SetPrincipal(key.ID, iamproof.Principal{Name: u.Name, Policies: u.Policies})
	return key.ID, key.Secret
}

// startFunction runs the bootstrap of code (a logical id) with the
// environment template.yaml gives it and the first access key of u.
func (s *stack) startFunction(code, label string, u iamUser) *lambdaHost {
	return s.startWithKey(code, label, u.AccessKey, u.Secret)
}

// startNeighbour runs the bootstrap of code with the credentials of the
// neighbour as: a second key of its user, so that its calls here are told
// from its own function's; or, with lend, the key of a user holding the
// neighbour's policies and, lent besides, read access to the secrets code
// reads, so that code starts and its calls after start-up meet the
// neighbour's policies. It returns the host and the access key.
func (s *stack) startNeighbour(code, as string, lend bool) (*lambdaHost, string) {
	if lend {
		u := s.lentUser(code, as)
		return s.startWithKey(code, code+"-as-"+as+"-lent", u.AccessKey, u.Secret), u.AccessKey
	}
	if s.second == nil {
		s.second = map[string][2]string{}
	}
	if _, ok := s.second[as]; !ok {
		k, sec := s.accessKey(s.users[as])
		s.second[as] = [2]string{k, sec}
	}
	key := s.second[as]
	return s.startWithKey(code, code+"-as-"+as, key[0], key[1]), key[0]
}

// lentUser is the IAM user with the policies of as plus one that lends it
// code's secrets: every secretsmanager:GetSecretValue grant of code's
// policies, and nothing else.
func (s *stack) lentUser(code, as string) iamUser {
	if u, ok := s.lent[as+" "+code]; ok {
		return u
	}
	lent := iamproof.Policy{Version: "2012-10-17"}
	for _, p := range s.users[code].Policies {
		for _, st := range p.Policy.Statement {
			if st.Effect == "Allow" && slices.Contains(st.Action, "secretsmanager:GetSecretValue") {
				lent.Statement = append(lent.Statement, iamproof.Statement{Sid: st.Sid, Effect: "Allow",
					Action: iamproof.Strings{"secretsmanager:GetSecretValue"}, Resource: st.Resource})
			}
		}
	}
	policies := slices.Clone(s.users[as].Policies)
	if len(lent.Statement) > 0 {
		policies = append(policies, iamproof.NamedPolicy{Name: "LentSecretsOf" + code, Policy: lent})
	}
	u := s.createUser(strings.TrimSuffix(as, "Function")+"-lent-"+strings.TrimSuffix(code, "Function"), policies)
	if s.lent == nil {
		s.lent = map[string]iamUser{}
	}
	s.lent[as+" "+code] = u
	return u
}

func (s *stack) startWithKey(code, label, key, secret string) *lambdaHost {
	t := s.t
	env, err := iamproof.Environment(s.tmpl, code, s.scope)
	if err != nil {
		t.Fatal(err)
	}
	list := []string{
		"AWS_REGION=" + awstest.Region, "AWS_DEFAULT_REGION=" + awstest.Region,
		"AWS_ACCESS_KEY_ID=" + key, "AWS_SECRET_ACCESS_KEY=" + secret,
		"AWS_ENDPOINT_URL=" + s.gwURL, "AWS_MAX_ATTEMPTS=2",
		"AWS_REQUEST_CHECKSUM_CALCULATION=when_required", "AWS_RESPONSE_CHECKSUM_VALIDATION=when_required",
		"BRIGHTRUN_S3_PATH_STYLE=1", // the emulator's bucket is reached by path, not by host name
	}
	for k, v := range env {
		list = append(list, k+"="+v)
	}
	folder := strings.ToLower(strings.TrimSuffix(code, "Function"))
	return startLambda(t, label, filepath.Join(s.bins, folder), list)
}

// routes are the template's HttpApi events.
func (s *stack) routes() []apiRoute {
	var out []apiRoute
	for _, id := range iamproof.Functions(s.tmpl) {
		evs, _ := iamproof.Dig(s.tmpl["Resources"], id, "Properties", "Events").(map[string]any)
		for _, ev := range evs {
			if iamproof.Dig(ev, "Type") != "HttpApi" {
				continue
			}
			p := iamproof.Dig(ev, "Properties")
			out = append(out, apiRoute{Function: id, Method: fmt.Sprint(iamproof.Dig(p, "Method")), Path: fmt.Sprint(iamproof.Dig(p, "Path")),
				Public: iamproof.Dig(p, "Auth", "Authorizer") == "NONE"})
		}
	}
	return out
}

// do calls the HTTP API as user.
func (s *stack) do(method, path, user, body string, header map[string]string) (int, []byte) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.api+path, strings.NewReader(body))
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+user)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// expect calls the API and checks the status.
func (s *stack) expect(want int, method, path, user, body string, into any) []byte {
	s.t.Helper()
	status, out := s.do(method, path, user, body, nil)
	if status != want {
		s.t.Errorf("%s %s = %d %s, want %d", method, path, status, out, want)
	}
	if into != nil && status == want {
		if err := json.Unmarshal(out, into); err != nil {
			s.t.Errorf("%s %s: %v", method, path, err)
		}
	}
	return out
}

type signedRequest struct {
	Method  string
	URL     string
	Headers map[string]string
}

// send does a presigned request, as a browser, the CLI or the worker does.
func send(r signedRequest, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(r.Method, r.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, nil
}

// s3Event is the notification S3 sends validate for an upload.
func (s *stack) s3Event(key string, size int64) events.S3Event {
	return events.S3Event{Records: []events.S3EventRecord{{
		EventVersion: "2.1", EventSource: "aws:s3", AWSRegion: awstest.Region, EventTime: time.Now().UTC(), EventName: "ObjectCreated:Put",
		S3: events.S3Entity{SchemaVersion: "1.0", Bucket: events.S3Bucket{Name: s.bucket, Arn: "arn:aws:s3:::" + s.bucket},
			Object: events.S3Object{Key: url.QueryEscape(key), Size: size}},
	}}}
}

// deliver does what the SQS event source does for dispatch: receive the
// jobs queue's messages, hand them to the function, delete those it did
// not report as failed.
func (s *stack) deliver(ctx context.Context) int {
	t := s.t
	client := sqs.NewFromConfig(s.moto.Config)
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.queue.QueueURL), MaxNumberOfMessages: 10,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}, MessageAttributeNames: []string{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) == 0 {
		return 0
	}
	var ev events.SQSEvent
	for _, m := range out.Messages {
		rec := events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
			Attributes: m.Attributes, EventSource: "aws:sqs", EventSourceARN: s.scope.Attrs["JobsQueue"]["Arn"], AWSRegion: awstest.Region,
			MessageAttributes: map[string]events.SQSMessageAttribute{}}
		for k, a := range m.MessageAttributes {
			rec.MessageAttributes[k] = events.SQSMessageAttribute{StringValue: a.StringValue, DataType: aws.ToString(a.DataType)}
		}
		ev.Records = append(ev.Records, rec)
	}
	res, err := s.hosts["DispatchFunction"].invoke(ev)
	if err != nil {
		t.Fatal(err)
	}
	if res.err != "" {
		t.Fatalf("dispatch failed the batch: %s", res.err)
	}
	var answer events.SQSEventResponse
	_ = json.Unmarshal(res.body, &answer)
	failed := map[string]bool{}
	for _, f := range answer.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	for _, m := range out.Messages {
		if failed[aws.ToString(m.MessageId)] {
			t.Errorf("dispatch reported message %s as failed", aws.ToString(m.MessageId))
			continue
		}
		_, _ = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.queue.QueueURL), ReceiptHandle: m.ReceiptHandle})
	}
	return len(out.Messages)
}

// denials returns the gateway's denied decisions for an access key.
func (s *stack) entries(key string) []iamproof.Entry {
	var out []iamproof.Entry
	for _, e := range s.gw.Log() {
		if e.AccessKey == key {
			out = append(out, e)
		}
	}
	return out
}

type dataset struct {
	ID     string
	Status string
}

type created struct {
	Dataset dataset
	Upload  struct {
		Type     string
		Request  signedRequest
		UploadID string `json:"upload_id"`
		Parts    []struct {
			PartNumber int `json:"part_number"`
			signedRequest
		}
	}
}

type jobView struct {
	ID     string
	Status string
}

// legacyJobKey is the Idempotency-Key of the proof's job that runs on a
// worker without URL requests.
const legacyJobKey = "proof-legacy-worker"

// TestEveryFunctionRunsUnderItsOwnPolicyAndNoMore deploys template.yaml on
// the emulators and drives every function's real bootstrap through the
// pipeline with the credentials of an IAM user holding exactly that
// function's policies: every call must be allowed; every grant must be
// used by some call; and calls that a neighbouring function must not make
// are denied under the neighbour's policy.
func TestEveryFunctionRunsUnderItsOwnPolicyAndNoMore(t *testing.T) {
	started := time.Now()
	s := deployStack(t)
	ctx := t.Context()
	t.Logf("stack deployed in %s", time.Since(started).Round(time.Millisecond))
	const alice = "alice"
	sample, err := os.ReadFile(filepath.Join(root, "testdata", "datasets", "sample.jsonl"))
	if err != nil {
		t.Fatal(err)
	}

	// A webhook endpoint (jobs), to which every event below is fanned
	// out and tried (deliver): its host never resolves, so each try fails
	// and waits for the next, hidden in the webhook queue.
	var hook struct{ ID, Secret string }
	s.expect(201, "POST", "/v1/webhooks", alice, `{"url":"https://hooks.example.invalid/brightrun","description":"proof"}`, &hook)

	// A dataset: uploads hands out the URL, the browser uploads, S3
	// notifies validate.
	var ds created
	s.expect(201, "POST", "/v1/datasets", alice, fmt.Sprintf(`{"name":"sample","size_bytes":%d}`, len(sample)), &ds)
	if status, out, err := send(ds.Upload.Request, sample); err != nil || status != 200 {
		t.Fatalf("upload to uploads' presigned URL = %d %s %v, want 200", status, out, err)
	}
	// S3 notifies validate of the key the browser uploaded to.
	u, _ := url.Parse(ds.Upload.Request.URL)
	key := strings.TrimPrefix(u.Path, "/"+s.bucket+"/")
	if res, err := s.hosts["ValidateFunction"].invoke(s.s3Event(key, int64(len(sample)))); err != nil || res.err != "" {
		t.Fatalf("validate = %v %s", err, res.err)
	}
	var got dataset
	s.expect(200, "GET", "/v1/datasets/"+ds.Dataset.ID, alice, "", &got)
	if got.Status != "ready" {
		t.Fatalf("dataset after validation = %+v, want ready", got)
	}
	s.expect(200, "GET", "/v1/datasets", alice, "", nil)
	s.expect(200, "GET", "/v1/datasets/"+ds.Dataset.ID+"/report", alice, "", nil)

	// A ShareGPT dataset: validate writes its messages form beside the
	// upload, the file jobs train on; deleting the dataset removes it.
	sharegpt, err := os.ReadFile(filepath.Join(root, "testdata", "datasets", "sample.sharegpt.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var sg created
	s.expect(201, "POST", "/v1/datasets", alice, fmt.Sprintf(`{"name":"sharegpt","size_bytes":%d,"format":"sharegpt"}`, len(sharegpt)), &sg)
	if status, out, err := send(sg.Upload.Request, sharegpt); err != nil || status != 200 {
		t.Fatalf("upload = %d %s %v, want 200", status, out, err)
	}
	u, _ = url.Parse(sg.Upload.Request.URL)
	sgKey := strings.TrimPrefix(u.Path, "/"+s.bucket+"/")
	if res, err := s.hosts["ValidateFunction"].invoke(s.s3Event(sgKey, int64(len(sharegpt)))); err != nil || res.err != "" {
		t.Fatalf("validate = %v %s", err, res.err)
	}
	s.expect(200, "GET", "/v1/datasets/"+sg.Dataset.ID, alice, "", &got)
	if got.Status != "ready" {
		t.Fatalf("ShareGPT dataset after validation = %+v, want ready", got)
	}
	s.adminHead(ctx, pipeline.ConvertedKey(sgKey))
	s.expect(204, "DELETE", "/v1/datasets/"+sg.Dataset.ID, alice, "", nil)

	// An import from the operator's bucket: uploads checks the prefix and
	// enqueues it, imports copies the object where an upload lands, and
	// S3 notifies validate. A key outside the prefix is refused at once.
	var imp dataset
	s.expect(202, "POST", "/v1/datasets/import", alice, fmt.Sprintf(`{"source":"s3://%s/exports/sample.jsonl"}`, s.sources), &imp)
	s.expect(400, "POST", "/v1/datasets/import", alice, fmt.Sprintf(`{"source":"s3://%s/private/sample.jsonl"}`, s.sources), nil)
	if n := s.deliverImports(ctx); n != 1 {
		t.Fatalf("the import queue held %d messages, want the import's", n)
	}
	impKey := pipeline.DatasetKey(alice, imp.ID)
	s.adminHead(ctx, impKey)
	if res, err := s.hosts["ValidateFunction"].invoke(s.s3Event(impKey, int64(len(sample)))); err != nil || res.err != "" {
		t.Fatalf("validate = %v %s", err, res.err)
	}
	s.expect(200, "GET", "/v1/datasets/"+imp.ID, alice, "", &got)
	if got.Status != "ready" {
		t.Fatalf("imported dataset after validation = %+v, want ready; imports' log:\n%s", got, s.hosts["ImportsFunction"].logs)
	}
	s.expect(204, "DELETE", "/v1/datasets/"+imp.ID, alice, "", nil)
	// An import that cannot succeed (an empty file under the prefix)
	// ends invalid at once, and imports tells the owner's webhooks. (A
	// missing key would be a denial: without s3:ListBucket on the
	// operator's bucket, S3 answers AccessDenied for it.)
	var missing dataset
	s.expect(202, "POST", "/v1/datasets/import", alice, fmt.Sprintf(`{"source":"s3://%s/exports/empty.jsonl"}`, s.sources), &missing)
	if n := s.deliverImports(ctx); n != 1 {
		t.Fatalf("the import queue held %d messages, want the failing import's", n)
	}
	s.expect(200, "GET", "/v1/datasets/"+missing.ID, alice, "", &got)
	if got.Status != "invalid" {
		t.Fatalf("a failed import = %+v, want invalid; imports' log:\n%s", got, s.hosts["ImportsFunction"].logs)
	}
	s.expect(204, "DELETE", "/v1/datasets/"+missing.ID, alice, "", nil)

	// A second dataset whose report is lost (deleted by hand): reading it
	// is a 409 telling the user to upload again, which needs S3's 404 for
	// the missing key, not its 403.
	var lost created
	s.expect(201, "POST", "/v1/datasets", alice, fmt.Sprintf(`{"name":"lost","size_bytes":%d}`, len(sample)), &lost)
	if status, out, err := send(lost.Upload.Request, sample); err != nil || status != 200 {
		t.Fatalf("upload = %d %s %v, want 200", status, out, err)
	}
	u, _ = url.Parse(lost.Upload.Request.URL)
	lostKey := strings.TrimPrefix(u.Path, "/"+s.bucket+"/")
	if res, err := s.hosts["ValidateFunction"].invoke(s.s3Event(lostKey, int64(len(sample)))); err != nil || res.err != "" {
		t.Fatalf("validate = %v %s", err, res.err)
	}
	s.adminDeleteReport(ctx, lostKey)
	s.expect(409, "GET", "/v1/datasets/"+lost.Dataset.ID+"/report", alice, "", nil)

	// A large dataset: a multipart upload, completed with a part that was
	// never uploaded (S3 refuses it: a conflict with the upload, 409 as the
	// OpenAPI document says), then deleted: the upload is aborted.
	var big created
	s.expect(201, "POST", "/v1/datasets", alice, `{"name":"big","size_bytes":70000000}`, &big)
	if big.Upload.Type != "multipart" || len(big.Upload.Parts) == 0 {
		t.Fatalf("a 70 MB dataset's upload = %+v, want a multipart plan", big.Upload)
	}
	s.expect(409, "POST", "/v1/datasets/"+big.Dataset.ID+"/complete", alice, `{"parts":[{"part_number":1,"etag":"0123456789abcdef0123456789abcdef"}]}`, nil)
	s.expect(204, "DELETE", "/v1/datasets/"+big.Dataset.ID, alice, "", nil)

	// Estimates.
	for _, p := range []string{"/v1/presets", "/v1/gpus", "/v1/models", "/healthz"} {
		s.expect(200, "GET", p, alice, "", nil)
	}
	s.expect(200, "POST", "/v1/estimates", alice, fmt.Sprintf(`{"dataset_id":%q,"preset":"fast"}`, ds.Dataset.ID), nil)

	// A job: created and enqueued by jobs, claimed and submitted by
	// dispatch, trained by the emulated worker (which asks webhook for its
	// URLs as it needs them: the dataset's download, a checkpoint's upload
	// at each of its four epochs' ends, the adapter's upload; webhook
	// checks each checkpoint and prunes the oldest), confirmed by RunPod's
	// webhook to webhook.
	jobBody := fmt.Sprintf(`{"dataset_id":%q,"preset":"fast","hyperparameters":{"batch_size":1,"gradient_accumulation":1,"epochs":4}}`, ds.Dataset.ID)
	var job jobView
	status, out := s.do("POST", "/v1/jobs", alice, jobBody, map[string]string{"Idempotency-Key": "proof-job-1"})
	if status != 201 || json.Unmarshal(out, &job) != nil {
		t.Fatalf("POST /v1/jobs = %d %s, want 201", status, out)
	}
	if n := s.deliver(ctx); n != 1 {
		t.Fatalf("the jobs queue held %d messages, want the new job's", n)
	}
	// While it runs, its progress is live state beside the record: the
	// lists, the dataset's deletion check and a reconcile pass read it
	// with the job (BatchGetItem).
	seenRunning := false
	if !waitUntil(ctx, 60*time.Second, func() bool {
		var j jobView
		s.expect(200, "GET", "/v1/jobs/"+job.ID, alice, "", &j)
		job.Status = j.Status
		if j.Status == "running" && !seenRunning {
			seenRunning = true
			s.expect(200, "GET", "/v1/jobs", alice, "", nil)
			s.expect(409, "DELETE", "/v1/datasets/"+ds.Dataset.ID, alice, "", nil)
			if res, err := s.hosts["ReconcileFunction"].invoke(map[string]any{"version": "0", "id": "proof-running", "detail-type": "Scheduled Event",
				"source": "aws.events", "time": time.Now().UTC().Format(time.RFC3339), "detail": map[string]any{}}); err != nil || res.err != "" {
				t.Errorf("reconcile while a job runs = %v %s", err, res.err)
			}
		}
		return j.Status == "completed" || j.Status == "failed" || j.Status == "cancelled"
	}) || job.Status != "completed" {
		t.Fatalf("job %s ended %q, want completed; the gateway saw:\n%s", job.ID, job.Status, iamproof.Summary(iamproof.Denied(s.gw.Log())))
	}
	if !seenRunning {
		t.Errorf("job %s was never seen running: the reads of its live state were not exercised", job.ID)
	}
	// RunPod's completion webhook comes after the last callback.
	waitUntil(ctx, 10*time.Second, func() bool { return len(s.runpod.Webhooks()) > 0 })
	time.Sleep(300 * time.Millisecond)

	for _, p := range []string{"/v1/jobs", "/v1/jobs?status=completed", "/v1/jobs/" + job.ID + "/events", "/v1/notifications"} {
		s.expect(200, "GET", p, alice, "", nil)
	}
	// Metric points come only from the worker's signed progress callbacks,
	// which pass API Gateway's payload and the Lambda proxy.
	var metrics struct{ Metrics []json.RawMessage }
	s.expect(200, "GET", "/v1/jobs/"+job.ID+"/metrics", alice, "", &metrics)
	if len(metrics.Metrics) == 0 {
		t.Errorf("job %s has no metric points: the worker's callbacks did not get through to the webhook function; its log:\n%s", job.ID, s.hosts["WebhookFunction"].logs)
	}
	type file struct {
		Name     string
		Download signedRequest
	}
	var arts struct {
		Artifacts   []file
		Checkpoints []struct{ Files []file }
	}
	s.expect(200, "GET", "/v1/jobs/"+job.ID+"/artifacts", alice, "", &arts)
	if len(arts.Artifacts) == 0 {
		t.Fatalf("the completed job has no artifacts")
	}
	if status, out, err := send(arts.Artifacts[0].Download, nil); err != nil || status != 200 {
		t.Errorf("download of %s with jobs' presigned URL = %d %s %v, want 200", arts.Artifacts[0].Name, status, out, err)
	}
	if len(arts.Checkpoints) == 0 || len(arts.Checkpoints[0].Files) == 0 {
		t.Fatalf("the completed job lists no checkpoint: %+v", arts)
	}
	f := arts.Checkpoints[0].Files[0]
	if status, out, err := send(f.Download, nil); err != nil || status != 200 {
		t.Errorf("download of checkpoint file %s with jobs' presigned URL = %d %s %v, want 200", f.Name, status, out, err)
	}

	// A job on a worker that asks for no URLs: it downloads and uploads
	// with the URLs dispatch put in its spec.
	var legacyJob jobView
	status, out = s.do("POST", "/v1/jobs", alice, jobBody, map[string]string{"Idempotency-Key": legacyJobKey})
	if status != 201 || json.Unmarshal(out, &legacyJob) != nil {
		t.Fatalf("POST /v1/jobs = %d %s, want 201", status, out)
	}
	if n := s.deliver(ctx); n != 1 {
		t.Fatalf("the jobs queue held %d messages, want the new job's", n)
	}
	if !waitUntil(ctx, 60*time.Second, func() bool {
		s.expect(200, "GET", "/v1/jobs/"+legacyJob.ID, alice, "", &legacyJob)
		return legacyJob.Status == "completed" || legacyJob.Status == "failed" || legacyJob.Status == "cancelled"
	}) || legacyJob.Status != "completed" {
		t.Fatalf("job %s on a worker without URL requests ended %q, want completed; the gateway saw:\n%s", legacyJob.ID, legacyJob.Status, iamproof.Summary(iamproof.Denied(s.gw.Log())))
	}

	// A second job on the dataset keeps it from being deleted until it is
	// cancelled (DELETE checks for active jobs by status).
	var second jobView
	s.expect(201, "POST", "/v1/jobs", alice, jobBody, &second)
	s.expect(409, "DELETE", "/v1/datasets/"+ds.Dataset.ID, alice, "", nil)
	s.expect(200, "POST", "/v1/jobs/"+second.ID+"/cancel", alice, "", nil)

	// A job whose dataset is no longer ready when dispatch claims it: it
	// fails at once (and dispatch publishes job.failed).
	s.dispatchFails(ctx, ds.Dataset.ID, jobBody)
	// A running job over its budget, on a run RunPod does not know:
	// reconciliation cancels it and publishes job.budget_exceeded.
	s.overBudgetJob(ctx, alice)

	// Reconciliation's pass.
	if res, err := s.hosts["ReconcileFunction"].invoke(map[string]any{"version": "0", "id": "proof", "detail-type": "Scheduled Event",
		"source": "aws.events", "time": time.Now().UTC().Format(time.RFC3339), "detail": map[string]any{}}); err != nil || res.err != "" {
		t.Errorf("reconcile = %v %s", err, res.err)
	}

	// A cursor one instance hands out is honoured by another: uploads and
	// jobs sign their cursors with the cursor key they share.
	for _, c := range []struct{ fn, list string }{{"UploadsFunction", "/v1/datasets"}, {"JobsFunction", "/v1/jobs"}} {
		var page struct {
			NextCursor string `json:"next_cursor"`
		}
		s.expect(200, "GET", c.list+"?limit=1", alice, "", &page)
		if page.NextCursor == "" {
			t.Errorf("GET %s?limit=1 gave no next_cursor; the proof stored two", c.list)
			continue
		}
		other := s.startFunction(c.fn, c.fn+"-2", s.users[c.fn])
		if r, err := other.callAPI("GET", c.list+"?limit=1&cursor="+page.NextCursor, nil, nil, alice); err != nil || r.Status != 200 {
			t.Errorf("GET %s with the cursor of another instance of %s = %d %s %v, want 200", c.list, c.fn, r.Status, r.Body, err)
		}
	}

	s.expect(204, "DELETE", "/v1/datasets/"+lost.Dataset.ID, alice, "", nil)

	// Every event published above, delivered by deliver: fanned out to the
	// endpoint, tried, and hidden until its next try.
	s.deliverWebhooks(ctx, hook.ID)

	s.probes(ctx, job.ID)
	s.neighbours(ds.Dataset.ID, job.ID, jobBody)
	// The completed job deleted, with its adapter, checkpoints, events and
	// metric points.
	s.expect(204, "DELETE", "/v1/jobs/"+job.ID, alice, "", nil)
	s.expect(404, "GET", "/v1/jobs/"+job.ID, alice, "", nil)
	t.Run("who reads which secret", s.secretReaders)

	// Every function's own calls passed under its own policy, and every
	// grant of its policy was used by one of them.
	for _, id := range iamproof.Functions(s.tmpl) {
		t.Run(id, func(t *testing.T) {
			own := s.entries(s.users[id].AccessKey)
			if len(own) == 0 {
				t.Fatalf("%s made no AWS call in the proof", id)
			}
			if denied := iamproof.Denied(own); len(denied) > 0 {
				t.Errorf("%s's own policy denied %d of its calls:\n%s", id, len(denied), iamproof.Summary(denied))
			}
			used := map[string]bool{}
			for _, e := range own {
				for _, g := range e.Decision.Grants {
					used[fmt.Sprintf("%s/%d %s %s", g.Policy, g.Statement, g.Action, g.Resource)] = true
				}
			}
			for _, p := range s.users[id].Policies {
				for i, st := range p.Policy.Statement {
					for _, a := range st.Action {
						for _, r := range st.Resource {
							if !used[fmt.Sprintf("%s/%d %s %s", p.Name, i, a, r)] {
								t.Errorf("%s grants %s on %s (statement %s), which none of its calls in the proof needed", id, a, r, st.Sid)
							}
						}
					}
				}
			}
		})
	}
	if testing.Verbose() {
		t.Logf("every authorization the gateway decided:\n%s", iamproof.Summary(s.gw.Log()))
		for _, id := range iamproof.Functions(s.tmpl) {
			t.Logf("%s's log:\n%s", id, s.hosts[id].logs)
		}
	}
	t.Logf("the proof took %s; the gateway decided %d authorizations", time.Since(started).Round(time.Millisecond), len(s.gw.Log()))
	t.Run("a published IAM simulator decides every request alike", s.crossCheck)
}

// crossCheck evaluates every authorization request the gateway decided
// (neighbours' denied probes included) with @cloud-copilot/iam-simulate
// (tools/iamsim, installed by tools/setup.sh node) and fails on any request
// it allows and the gateway denied or the other way round, or that it
// cannot evaluate. It skips when node or the package is missing (fails with
// BRIGHTRUN_REQUIRE_TOOLS=1).
func (s *stack) crossCheck(t *testing.T) {
	dir := filepath.Join(root, "tools", "iamsim")
	missing := ""
	node, err := exec.LookPath("node")
	if err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		missing = "tools/iamsim/node_modules has no @cloud-copilot/iam-simulate (tools/setup.sh node installs it)"
	}
	if missing != "" {
		if os.Getenv(infra.RequireToolsEnv) == "1" {
			t.Fatalf("%s; %s=1, so this is a failure", missing, infra.RequireToolsEnv)
		}
		t.Skipf("%s; skipping the cross-check (%s=1 makes this a failure)", missing, infra.RequireToolsEnv)
	}
	started := time.Now()
	f := s.gw.CrossCheck()
	path := filepath.Join(t.TempDir(), "requests.json")
	disagree, err := iamproof.RunCrossCheck(node, filepath.Join(dir, "crosscheck.mjs"), path, f)
	if err != nil {
		t.Fatal(err)
	}
	allowed := 0
	for _, r := range f.Requests {
		if r.Allowed {
			allowed++
		}
	}
	for _, d := range disagree {
		t.Errorf("iam-simulate disagrees: %s", d)
	}
	t.Logf("iam-simulate decided the %d distinct requests (%d allowed, %d denied; %d decisions of the gateway) of %d principals in %s; %d disagreements",
		len(f.Requests), allowed, len(f.Requests)-allowed, f.Decisions, len(f.Principals), time.Since(started).Round(time.Millisecond), len(disagree))
}

// adminHead fails the test unless key holds an object (read as the admin).
func (s *stack) adminHead(ctx context.Context, key string) {
	s.t.Helper()
	client := s3.NewFromConfig(s.moto.Config, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}); err != nil {
		s.t.Fatalf("no object at %s: %v", key, err)
	}
}

// adminDeleteReport removes a dataset's report behind the functions' backs.
func (s *stack) adminDeleteReport(ctx context.Context, datasetKey string) {
	s.t.Helper()
	client := s3.NewFromConfig(s.moto.Config, func(o *s3.Options) { o.UsePathStyle = true })
	prefix := strings.TrimSuffix(datasetKey, ".jsonl")
	out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)})
	if err != nil {
		s.t.Fatal(err)
	}
	deleted := 0
	for _, o := range out.Contents {
		if k := aws.ToString(o.Key); k != datasetKey {
			if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: o.Key}); err != nil {
				s.t.Fatal(err)
			}
			deleted++
		}
	}
	if deleted != 1 {
		s.t.Fatalf("found %d objects beside %s, want its report", deleted, datasetKey)
	}
}

// clientConfig reaches the gateway with a user's credentials.
func (s *stack) clientConfig(u iamUser) aws.Config {
	cfg := awstest.NewConfig(s.gwURL)
	cfg.Credentials = aws.NewCredentialsCache(credentialsOf(u))
	cfg.RetryMaxAttempts = 1
	return cfg
}

type staticCreds iamUser

func (c staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: c.AccessKey, SecretAccessKey: c.Secret, Source: "iamproof"}, nil
}

func credentialsOf(u iamUser) aws.CredentialsProvider { return staticCreds(u) }

// probes make, with a function's own credentials, the calls of code paths
// the proof cannot drive in a test's time: reconciliation repairs a job
// only when its heartbeat has been stale for 2 minutes (then it reads and
// writes the job, and collects the adapter RunPod reports), and enqueues a
// stored job only a minute after it was created; validation deletes the
// report it just wrote only when the dataset was deleted while it was
// validating. The calls are the ones those paths make (the same API
// operations on the same items), so that the grants are proven to allow
// them and are counted as used.
func (s *stack) probes(ctx context.Context, jobID string) {
	t := s.t
	rec := s.users["ReconcileFunction"]
	cfg := s.clientConfig(rec)
	db := dynamodb.NewFromConfig(cfg)
	table := s.scope.Refs["Table"]
	// Find the job's item as the store keeps it (admin), to read and
	// rewrite it unchanged as reconcile's repair does.
	scan, err := dynamodb.NewFromConfig(s.moto.Config).Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	var item map[string]dbtypes.AttributeValue
	for _, it := range scan.Items {
		if sk, ok := it["sk"].(*dbtypes.AttributeValueMemberS); ok && strings.HasSuffix(sk.Value, jobID) && strings.HasPrefix(sk.Value, "JOB#") {
			item = it
		}
	}
	if item == nil {
		t.Fatalf("no item of job %s in the table", jobID)
	}
	for name, call := range map[string]func() error{
		"reconcile reads a stale job": func() error {
			_, err := db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: map[string]dbtypes.AttributeValue{"pk": item["pk"], "sk": item["sk"]}, ConsistentRead: aws.Bool(true)})
			return err
		},
		"reconcile writes the repaired job": func() error {
			_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
			return err
		},
		"reconcile enqueues a job stored but never enqueued": func() error {
			_, err := sqs.NewFromConfig(cfg).SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.queue.QueueURL),
				MessageBody: aws.String(fmt.Sprintf(`{"owner":"alice","job_id":%q}`, jobID))})
			return err
		},
		"reconcile collects the adapter of a run RunPod completed": func() error {
			b, err := s3blob.New(s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true }), s3blob.Options{Bucket: s.bucket})
			if err != nil {
				return err
			}
			rc, _, err := b.Open(ctx, s.anyAdapterKey(ctx))
			if err == nil {
				rc.Close()
			}
			return err
		},
		"validate removes the report and the converted file of a dataset deleted while validating": func() error {
			b, err := s3blob.New(s3.NewFromConfig(s.clientConfig(s.users["ValidateFunction"]), func(o *s3.Options) { o.UsePathStyle = true }), s3blob.Options{Bucket: s.bucket})
			if err != nil {
				return err
			}
			return errors.Join(b.Delete(ctx, "datasets/probe/ds_probe.report.json"), b.Delete(ctx, "datasets/probe/ds_probe.messages.jsonl"))
		},
		"imports removes the copy of a dataset deleted while it was copied": func() error {
			b, err := s3blob.New(s3.NewFromConfig(s.clientConfig(s.users["ImportsFunction"]), func(o *s3.Options) { o.UsePathStyle = true }), s3blob.Options{Bucket: s.bucket})
			if err != nil {
				return err
			}
			return b.Delete(ctx, "datasets/probe/ds_probe.jsonl")
		},
	} {
		if err := call(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The probe's message is not a job to dispatch.
	_, _ = sqs.NewFromConfig(s.moto.Config).PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(s.queue.QueueURL)})
}

// deliverImports hands the import queue's messages to the imports
// function as its SQS trigger would, and returns how many there were.
func (s *stack) deliverImports(ctx context.Context) int {
	t := s.t
	client := sqs.NewFromConfig(s.moto.Config)
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.importQueue), MaxNumberOfMessages: 10,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range out.Messages {
		ev := events.SQSEvent{Records: []events.SQSMessage{{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
			Body: aws.ToString(m.Body), Attributes: m.Attributes, EventSource: "aws:sqs", EventSourceARN: s.scope.Attrs["ImportQueue"]["Arn"], AWSRegion: awstest.Region}}}
		res, err := s.hosts["ImportsFunction"].invoke(ev)
		if err != nil {
			t.Fatal(err)
		}
		var answer events.SQSEventResponse
		_ = json.Unmarshal(res.body, &answer)
		if res.err != "" || len(answer.BatchItemFailures) > 0 {
			t.Fatalf("imports failed message %s: %s %+v; its log:\n%s", aws.ToString(m.MessageId), res.err, answer, s.hosts["ImportsFunction"].logs)
		}
		_, _ = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.importQueue), ReceiptHandle: m.ReceiptHandle})
	}
	return len(out.Messages)
}

func (s *stack) anyAdapterKey(ctx context.Context) string {
	out, err := s3.NewFromConfig(s.moto.Config, func(o *s3.Options) { o.UsePathStyle = true }).ListObjectsV2(ctx,
		&s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String("adapters/")})
	if err != nil || len(out.Contents) == 0 {
		s.t.Fatalf("no adapter in the bucket: %v", err)
	}
	return aws.ToString(out.Contents[0].Key)
}

// neighbours runs functions' code with a neighbouring function's
// credentials: the calls that neighbour must not make are denied.
func (s *stack) neighbours(datasetID, jobID, jobBody string) {
	postJob := func(h *lambdaHost) (int, error) {
		r, err := h.callAPI("POST", "/v1/jobs", nil, []byte(jobBody), "alice")
		return r.Status, err
	}
	// start makes the code's first event: a code that cannot read its
	// secrets has exited by then.
	start := func(h *lambdaHost) (int, error) {
		r, err := h.callAPI("GET", "/healthz", nil, nil, "")
		return r.Status, err
	}
	event := func(ev any) func(h *lambdaHost) (int, error) {
		return func(h *lambdaHost) (int, error) {
			res, err := h.invoke(ev)
			if err == nil && res.err == "" {
				return 200, nil
			}
			return 500, err
		}
	}
	scheduled := event(map[string]any{"detail-type": "Scheduled Event", "source": "aws.events", "detail": map[string]any{}})
	batch := event(events.SQSEvent{}) // an empty batch of the jobs queue
	secret := func(id string) string { return s.scope.Refs[id] }
	for _, c := range []struct {
		name     string
		code, as string
		// lend lends the neighbour the code's secrets, so that the code
		// starts and the row tests the call after start-up it names (what
		// each function may read of the secrets has rows of its own).
		lend bool
		// answered says the code may still answer 2xx: it stores the job
		// and leaves its enqueueing to reconciliation.
		answered bool
		action   string // the denial that must be among the gateway's
		resource string // a substring of its resource
		run      func(h *lambdaHost) (int, error)
	}{
		{"estimate cannot write jobs", "JobsFunction", "EstimateFunction", true, false, "dynamodb:PutItem", ":table/", postJob},
		{"uploads cannot enqueue jobs", "JobsFunction", "UploadsFunction", true, true, "sqs:SendMessage", s.scope.Attrs["JobsQueue"]["QueueName"], postJob},
		{"estimate cannot delete datasets", "UploadsFunction", "EstimateFunction", true, false, "dynamodb:Query", "/index/by_status",
			func(h *lambdaHost) (int, error) {
				r, err := h.callAPI("DELETE", "/v1/datasets/"+datasetID, nil, nil, "alice")
				return r.Status, err
			}},
		{"jobs cannot hand out upload URLs", "UploadsFunction", "JobsFunction", false, false, "s3:PutObject", "/datasets/",
			func(h *lambdaHost) (int, error) {
				r, err := h.callAPI("POST", "/v1/datasets", nil, []byte(`{"name":"x","size_bytes":3}`), "alice")
				if err != nil || r.Status != 201 {
					return r.Status, err
				}
				var c created
				if err := json.Unmarshal(r.Body, &c); err != nil {
					return 0, err
				}
				status, _, err := send(c.Upload.Request, []byte("abc"))
				return status, err
			}},
		{"validate cannot read adapters", "JobsFunction", "ValidateFunction", true, false, "s3:GetObject", "/adapters/",
			func(h *lambdaHost) (int, error) {
				r, err := h.callAPI("GET", "/v1/jobs/"+jobID+"/artifacts", nil, nil, "alice")
				if err != nil || r.Status != 200 {
					return r.Status, err
				}
				var arts struct {
					Artifacts []struct{ Download signedRequest }
				}
				if err := json.Unmarshal(r.Body, &arts); err != nil || len(arts.Artifacts) == 0 {
					return 0, fmt.Errorf("artifacts %s: %v", r.Body, err)
				}
				status, _, err := send(arts.Artifacts[0].Download, nil)
				return status, err
			}},
		{"webhook cannot scan jobs for reconciliation", "ReconcileFunction", "WebhookFunction", false, false, "dynamodb:Query", "/index/active_by_created", scheduled},

		// The secret split: the code cannot even start.
		{"validate cannot read the RunPod API key", "ReconcileFunction", "ValidateFunction", false, false, "secretsmanager:GetSecretValue", secret("RunPodApiKeySecret"), scheduled},
		{"estimate cannot read the RunPod API key", "DispatchFunction", "EstimateFunction", false, false, "secretsmanager:GetSecretValue", secret("RunPodApiKeySecret"), batch},
		{"uploads cannot read the RunPod API key", "JobsFunction", "UploadsFunction", false, false, "secretsmanager:GetSecretValue", secret("RunPodApiKeySecret"), start},
		{"estimate cannot read the callback master", "WebhookFunction", "EstimateFunction", false, false, "secretsmanager:GetSecretValue", secret("CallbackMasterSecret"), start},
		{"jobs cannot read the callback master", "WebhookFunction", "JobsFunction", false, false, "secretsmanager:GetSecretValue", secret("CallbackMasterSecret"), start},
		{"reconcile cannot read the callback master", "DispatchFunction", "ReconcileFunction", false, false, "secretsmanager:GetSecretValue", secret("CallbackMasterSecret"), batch},
		{"webhook cannot read the cursor key", "UploadsFunction", "WebhookFunction", false, false, "secretsmanager:GetSecretValue", secret("CursorKeySecret"), start},
		{"dispatch cannot read the cursor key", "JobsFunction", "DispatchFunction", false, false, "secretsmanager:GetSecretValue", secret("CursorKeySecret"), start},
		{"validate cannot read the cursor key", "UploadsFunction", "ValidateFunction", false, false, "secretsmanager:GetSecretValue", secret("CursorKeySecret"), start},
	} {
		t := s.t
		h, key := s.startNeighbour(c.code, c.as, c.lend)
		// An error (the function could not start: a secret it may not
		// read) is a failure too; the denial must be among the gateway's.
		status, err := c.run(h)
		if err != nil {
			status = 0
		}
		if !c.answered && status >= 200 && status < 300 {
			t.Errorf("neighbour %q: %s's code with %s's credentials answered %d, want a failure", c.name, c.code, c.as, status)
		}
		var found bool
		var all []iamproof.Entry
		for _, e := range s.gw.Log() {
			if e.AccessKey != key {
				continue // the neighbour's own function uses its first key
			}
			all = append(all, e)
			if !e.Decision.Allowed && e.Request.Action == c.action && strings.Contains(e.Request.Resource, c.resource) {
				found = true
			}
		}
		if !found {
			t.Errorf("neighbour %q: %s's policy did not deny %s on *%s* to %s's code; the gateway saw:\n%s", c.name, c.as, c.action, c.resource, c.code, iamproof.Summary(all))
		}
		s.gw.Forget(key)
	}
}

// whoReadsWhich is the secret split: the functions whose policies may read
// each secret of the template, and no others.
var whoReadsWhich = map[string][]string{
	// Submits, checks and cancels runs; webhook confirms RunPod's
	// completion webhook with /status; jobs cancels.
	"RunPodApiKeySecret": {"DispatchFunction", "JobsFunction", "ReconcileFunction", "WebhookFunction"},
	// dispatch derives each job's callback secret and webhook token;
	// webhook checks them.
	"CallbackMasterSecret": {"DispatchFunction", "WebhookFunction"},
	// The functions that hand list cursors to clients.
	"CursorKeySecret": {"JobsFunction", "UploadsFunction"},
}

// secretReaders checks every function's policies, as IAM stored them,
// against whoReadsWhich.
func (s *stack) secretReaders(t *testing.T) {
	var declared []string
	for id, r := range s.tmpl["Resources"].(map[string]any) {
		if iamproof.Dig(r, "Type") == "AWS::SecretsManager::Secret" {
			declared = append(declared, id)
		}
	}
	if want := slices.Sorted(maps.Keys(whoReadsWhich)); !slices.Equal(slices.Sorted(slices.Values(declared)), want) {
		t.Errorf("the template's secrets = %v, want %v", slices.Sorted(slices.Values(declared)), want)
	}
	for secret, readers := range whoReadsWhich {
		arn := s.scope.Refs[secret]
		for _, fn := range iamproof.Functions(s.tmpl) {
			d, err := iamproof.Evaluate(s.users[fn].Policies, iamproof.Request{Action: "secretsmanager:GetSecretValue", Resource: arn})
			if err != nil {
				t.Fatal(err)
			}
			if want := slices.Contains(readers, fn); d.Allowed != want {
				t.Errorf("%s may read %s: %v, want %v", fn, secret, d.Allowed, want)
			}
		}
	}
}

// admin is the store with the emulator's own credentials: the proof sets
// up states no API call makes.
func (s *stack) admin() *dynamo.Store {
	st, err := dynamo.New(dynamodb.NewFromConfig(s.moto.Config), dynamo.Options{Table: s.table, CursorKey: bytes.Repeat([]byte("k"), dynamo.MinCursorKeyLen)})
	if err != nil {
		s.t.Fatal(err)
	}
	return st
}

// dispatchFails creates a job on datasetID, makes the dataset validate
// again behind the functions' backs while the job waits in the queue, has
// dispatch fail it, and makes the dataset ready again.
func (s *stack) dispatchFails(ctx context.Context, datasetID, jobBody string) {
	t := s.t
	var j jobView
	s.expect(201, "POST", "/v1/jobs", "alice", jobBody, &j)
	admin := s.admin()
	set := func(st pipeline.DatasetStatus) {
		if _, err := pipeline.UpdateDataset(ctx, admin, "alice", datasetID, func(d *pipeline.Dataset) error { d.Status = st; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	set(pipeline.DatasetValidating)
	defer set(pipeline.DatasetReady)
	s.deliver(ctx)
	s.expect(200, "GET", "/v1/jobs/"+j.ID, "alice", "", &j)
	if j.Status != "failed" {
		t.Errorf("a job whose dataset is validating again ended %s at dispatch, want failed", j.Status)
	}
}

// overBudgetJob stores a running job of owner that has spent more than
// its budget on a run RunPod does not know.
func (s *stack) overBudgetJob(ctx context.Context, owner string) {
	now := time.Now().UTC()
	started := now.Add(-time.Hour)
	budget := 1.0
	j := &pipeline.Job{ID: pipeline.NewID("job", now), Owner: owner, DatasetID: "ds_gone", BaseModel: "m", GPUType: "g", Preset: "fast",
		Status: pipeline.JobRunning, Attempt: 1, RunPodID: "rp-proof-over-budget", StartedAt: &started, BudgetUSD: &budget,
		Estimate: &pipeline.JobEstimate{PriceUSDPerSecond: 0.01}, CreatedAt: started, UpdatedAt: started}
	if err := s.admin().CreateJob(ctx, j); err != nil {
		s.t.Fatal(err)
	}
}

// deliverWebhooks hands the webhook queue to deliver, as Lambda's event
// source would, until no message is visible; it deletes the messages
// deliver did not report as failed (a failed one was hidden until its next
// try). Then the endpoint's delivery log shows the tries.
func (s *stack) deliverWebhooks(ctx context.Context, endpointID string) {
	t := s.t
	client := sqs.NewFromConfig(s.moto.Config)
	handled := 0
	for round := 0; round < 20; round++ {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(s.hooks), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			break
		}
		var ev events.SQSEvent
		for _, m := range out.Messages {
			ev.Records = append(ev.Records, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle),
				Body: aws.ToString(m.Body), EventSource: "aws:sqs", EventSourceARN: s.scope.Attrs["WebhookQueue"]["Arn"], AWSRegion: awstest.Region})
		}
		res, err := s.hosts["DeliverFunction"].invoke(ev)
		if err != nil || res.err != "" {
			t.Fatalf("deliver = %v %s", err, res.err)
		}
		var answer events.SQSEventResponse
		_ = json.Unmarshal(res.body, &answer)
		failed := map[string]bool{}
		for _, f := range answer.BatchItemFailures {
			failed[f.ItemIdentifier] = true
		}
		for _, m := range out.Messages {
			if !failed[aws.ToString(m.MessageId)] {
				_, _ = client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(s.hooks), ReceiptHandle: m.ReceiptHandle})
			}
		}
		handled += len(out.Messages)
	}
	var log struct {
		Deliveries []struct {
			ID, Status   string
			EventType    string `json:"event_type"`
			AttemptCount int    `json:"attempt_count"`
			Attempts     []struct{ Error string }
		}
	}
	s.expect(200, "GET", "/v1/webhooks/"+endpointID+"/deliveries?limit=100", "alice", "", &log)
	types := map[string]bool{}
	for _, d := range log.Deliveries {
		types[d.EventType] = true
		if d.Status != "pending" || d.AttemptCount != 1 || len(d.Attempts) != 1 || d.Attempts[0].Error == "" {
			t.Errorf("delivery %+v, want pending after one failed try", d)
		}
	}
	for _, typ := range []string{pipeline.EventDatasetReady, pipeline.EventDatasetInvalid, pipeline.EventJobRunning, pipeline.EventJobCompleted, pipeline.EventJobFailed,
		pipeline.EventJobCancelled, pipeline.EventJobBudgetExceeded} {
		if !types[typ] {
			t.Errorf("no %s delivery among %d (%d messages handled); deliver's log:\n%s", typ, len(log.Deliveries), handled, s.hosts["DeliverFunction"].logs)
		}
	}
	if len(log.Deliveries) > 0 {
		s.expect(202, "POST", "/v1/webhooks/"+endpointID+"/deliveries/"+log.Deliveries[0].ID+"/redeliver", "alice", "", nil)
	}
	s.expect(200, "POST", "/v1/webhooks/"+endpointID+"/rotate", "alice", "", nil)
	s.expect(200, "PATCH", "/v1/webhooks/"+endpointID, "alice", `{"disabled":true}`, nil)
	s.expect(204, "DELETE", "/v1/webhooks/"+endpointID, "alice", "", nil)
}
