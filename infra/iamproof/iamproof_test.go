package iamproof

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var acct = Account{Partition: "aws", Region: "us-east-1", ID: "123456789012"}

const table = "arn:aws:dynamodb:us-east-1:123456789012:table/t"

func policy(t *testing.T, doc string) []NamedPolicy {
	t.Helper()
	var p Policy
	if err := p.UnmarshalJSON([]byte(doc)); err != nil {
		t.Fatal(err)
	}
	return []NamedPolicy{{Name: "p", Policy: p}}
}

func TestEvaluateFollowsIAMsOrder(t *testing.T) {
	p := policy(t, `{"Statement":[
		{"Sid":"Items","Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem"],"Resource":"`+table+`"},
		{"Sid":"OneIndex","Effect":"Allow","Action":"dynamodb:Query","Resource":"`+table+`/index/by_created"},
		{"Sid":"Objects","Effect":"Allow","Action":"s3:Get*","Resource":"arn:aws:s3:::b/datasets/*.jsonl"},
		{"Sid":"List","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":"datasets/*"}}},
		{"Sid":"NoReports","Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/datasets/secret*"}
	]}`)
	for _, c := range []struct {
		name string
		req  Request
		want bool
	}{
		{"an action on the table is allowed", Request{Action: "dynamodb:GetItem", Resource: table}, true},
		{"actions compare case-insensitively", Request{Action: "DynamoDB:getitem", Resource: table}, true},
		{"an action not listed is denied", Request{Action: "dynamodb:DeleteItem", Resource: table}, false},
		{"a table grant does not cover its indexes", Request{Action: "dynamodb:GetItem", Resource: table + "/index/by_created"}, false},
		{"a query of the granted index is allowed", Request{Action: "dynamodb:Query", Resource: table + "/index/by_created"}, true},
		{"a query of another index is denied", Request{Action: "dynamodb:Query", Resource: table + "/index/by_status"}, false},
		{"a query of the table itself is denied", Request{Action: "dynamodb:Query", Resource: table}, false},
		{"another table is denied", Request{Action: "dynamodb:GetItem", Resource: table + "2"}, false},
		{"a wildcard action and key pattern allow", Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/datasets/alice/ds.jsonl"}, true},
		{"a key outside the pattern is denied", Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/datasets/alice/ds.report.json"}, false},
		{"an explicit deny wins", Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/datasets/secret.jsonl"}, false},
		{"a list under the prefix is allowed", Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b", Context: map[string][]string{"s3:prefix": {"datasets/alice"}}}, true},
		{"a list of another prefix is denied", Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b", Context: map[string][]string{"s3:prefix": {"adapters/"}}}, false},
		{"a list without a prefix is denied", Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := Evaluate(p, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != c.want {
				t.Errorf("Evaluate(%s) = %v, want %v", c.req, d.Allowed, c.want)
			}
		})
	}
}

func TestEvaluateRefusesWhatItDoesNotImplement(t *testing.T) {
	for _, doc := range []string{
		`{"Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"10"}}}]}`,
		`{"Statement":[{"Effect":"Allow","Action":"s3:ListBucket","Resource":"*","Condition":{"StringLike":{"s3:prefix":"${aws:username}/*"}}}]}`,
	} {
		if _, err := Evaluate(policy(t, doc), Request{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b"}); err == nil {
			t.Errorf("Evaluate with %s = no error, want one", doc)
		}
	}
}

func TestAuthorizationsFollowTheServiceReference(t *testing.T) {
	secrets := func(id string) string {
		return "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + id + "-AbCdEf"
	}
	sign := func(r *http.Request, service string) *http.Request {
		r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20261201/us-east-1/"+service+"/aws4_request, SignedHeaders=host, Signature=x")
		return r
	}
	json := func(service, target, body string) *http.Request {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		r.Header.Set("X-Amz-Target", target)
		return sign(r, service)
	}
	for _, c := range []struct {
		name string
		req  *http.Request
		body string
		want []string
	}{
		{"a query names its index", json("dynamodb", "DynamoDB_20120810.Query", ""), `{"TableName":"t","IndexName":"by_status"}`,
			[]string{"dynamodb:Query " + table + "/index/by_status"}},
		{"a query without an index names the table", json("dynamodb", "DynamoDB_20120810.Query", ""), `{"TableName":"t"}`,
			[]string{"dynamodb:Query " + table}},
		{"a transaction is checked item by item", json("dynamodb", "DynamoDB_20120810.TransactWriteItems", ""),
			`{"TransactItems":[{"Put":{"TableName":"t"}},{"ConditionCheck":{"TableName":"t"}}]}`,
			[]string{"dynamodb:PutItem " + table, "dynamodb:ConditionCheckItem " + table}},
		{"a batch write is BatchWriteItem on the table", json("dynamodb", "DynamoDB_20120810.BatchWriteItem", ""), `{"RequestItems":{"t":[]}}`,
			[]string{"dynamodb:BatchWriteItem " + table}},
		{"a batch send is SendMessage on the queue", json("sqs", "AmazonSQS.SendMessageBatch", ""), `{"QueueUrl":"http://127.0.0.1:1/123456789012/jobs"}`,
			[]string{"sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:jobs"}},
		{"a secret is named by its ARN", json("secretsmanager", "secretsmanager.GetSecretValue", ""), `{"SecretId":"app"}`,
			[]string{"secretsmanager:GetSecretValue " + secrets("app")}},
		{"HEAD of an object is GetObject", sign(httptest.NewRequest("HEAD", "/b/datasets/a.jsonl", nil), "s3"), "",
			[]string{"s3:GetObject arn:aws:s3:::b/datasets/a.jsonl"}},
		{"a multipart part is PutObject", sign(httptest.NewRequest("PUT", "/b/datasets/a.jsonl?partNumber=1&uploadId=u&x-id=UploadPart", nil), "s3"), "",
			[]string{"s3:PutObject arn:aws:s3:::b/datasets/a.jsonl"}},
		{"an abort is AbortMultipartUpload", sign(httptest.NewRequest("DELETE", "/b/datasets/a.jsonl?uploadId=u&x-id=AbortMultipartUpload", nil), "s3"), "",
			[]string{"s3:AbortMultipartUpload arn:aws:s3:::b/datasets/a.jsonl"}},
		{"a list carries its prefix", sign(httptest.NewRequest("GET", "/b?list-type=2&prefix=datasets%2F", nil), "s3"), "",
			[]string{`s3:ListBucket arn:aws:s3:::b {"s3:prefix":["datasets/"]}`}},
		{"a presigned PUT is PutObject of the signer", httptest.NewRequest("PUT", "/b/adapters/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=x&x-id=PutObject", nil), "",
			[]string{"s3:PutObject arn:aws:s3:::b/adapters/x"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			call, err := Authorizations(c.req, []byte(c.body), acct, secrets)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range call.Auth {
				got = append(got, r.String())
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("Authorizations = %q, want %q", got, c.want)
			}
			if call.AccessKey != "AKID" {
				t.Errorf("access key = %q, want AKID", call.AccessKey)
			}
		})
	}
}

func TestSAMPolicyTemplatesExpandAsSAMExpandsThem(t *testing.T) {
	tmpl, err := ParseTemplate([]byte(`
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - DynamoDBCrudPolicy: {TableName: !Ref Table}
        - SQSSendMessagePolicy: {QueueName: !GetAtt Queue.QueueName}
        - Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource: !Sub "${Bucket.Arn}/x/*"
`))
	if err != nil {
		t.Fatal(err)
	}
	s := &Scope{Account: acct, Refs: map[string]string{"Table": "t"},
		Attrs: map[string]map[string]string{"Queue": {"QueueName": "jobs"}, "Bucket": {"Arn": "arn:aws:s3:::b"}}}
	ps, err := FunctionPolicies(tmpl, "Fn", s)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		req  Request
		want bool
	}{
		{Request{Action: "dynamodb:UpdateItem", Resource: table}, true},
		{Request{Action: "dynamodb:Query", Resource: table + "/index/any"}, true},
		{Request{Action: "dynamodb:DeleteTable", Resource: table}, false},
		{Request{Action: "sqs:SendMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:jobs"}, true},
		{Request{Action: "sqs:ReceiveMessage", Resource: "arn:aws:sqs:us-east-1:123456789012:jobs"}, false},
		{Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/x/1"}, true},
	} {
		d, err := Evaluate(ps, c.req)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != c.want {
			t.Errorf("expanded policies allow %s = %v, want %v", c.req, d.Allowed, c.want)
		}
	}
}

// The project's template resolves: every function's policies and
// environment, with no intrinsic the resolver does not know.
func TestTheProjectTemplateResolves(t *testing.T) {
	data, err := os.ReadFile("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(data)
	if err != nil {
		t.Fatal(err)
	}
	s := &Scope{Account: acct, StackName: "proof", StackID: "arn:aws:cloudformation:us-east-1:123456789012:stack/proof/1a2b3c4d-0000-0000-0000-000000000000",
		Params: map[string]string{"RunPodEndpointId": "e", "RunPodApiUrl": "https://runpod", "PublicBaseUrl": "", "MaxDispatchAttempts": "5", "ImportS3Prefixes": "",
			"OwnerJobLimit": "3", "OwnerJobLimits": "", "MaxRunsInFlight": "0"},
		Refs: map[string]string{}, Attrs: map[string]map[string]string{}, Conditions: map[string]any{}}
	if c, ok := tmpl["Conditions"].(map[string]any); ok {
		s.Conditions = c
	}
	for name := range tmpl["Resources"].(map[string]any) {
		s.Refs[name] = name + "-ref"
		s.Attrs[name] = map[string]string{"Arn": "arn:aws:x:us-east-1:123456789012:" + name, "QueueName": name}
	}
	fns := Functions(tmpl)
	if len(fns) == 0 {
		t.Fatal("no functions")
	}
	for _, fn := range fns {
		if _, err := FunctionPolicies(tmpl, fn, s); err != nil {
			t.Errorf("%s policies: %v", fn, err)
		}
		if _, err := Environment(tmpl, fn, s); err != nil {
			t.Errorf("%s environment: %v", fn, err)
		}
	}
	v, err := s.Resolve(Dig(tmpl["Resources"], "DatasetBucket", "Properties", "BucketName"))
	if err != nil || !bytes.HasPrefix([]byte(v.(string)), []byte("brightrun-123456789012-1a2b3c4d")) {
		t.Errorf("DatasetBucket's name resolves to %v, %v; want brightrun-<account>-<stack id prefix>", v, err)
	}
}

// The imports function reads exactly the objects under the configured
// ImportS3Prefixes entries, and no S3 source at all when there are none.
func TestTheImportsRoleReadsOnlyTheConfiguredPrefixes(t *testing.T) {
	data, err := os.ReadFile("../../template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefixes string
		key      string
		want     bool
	}{
		{"training-files/exports/,archive/", "training-files/exports/a.jsonl", true},
		{"training-files/exports/,archive/", "training-files/exports/deep/b.jsonl", true},
		{"training-files/exports/,archive/", "archive/anything.jsonl", true},
		{"training-files/exports/,archive/", "training-files/private/a.jsonl", false},
		{"training-files/exports/,archive/", "other-bucket/exports/a.jsonl", false},
		{"training-files/exports/", "training-files/exports/a.jsonl", true},
		{"training-files/exports/", "archive/anything.jsonl", false},
		{"", "training-files/exports/a.jsonl", false},
	}
	for _, tt := range tests {
		s := &Scope{Account: acct, StackName: "proof", StackID: "arn:aws:cloudformation:us-east-1:123456789012:stack/proof/1a2b3c4d-0000-0000-0000-000000000000",
			Params: map[string]string{"ImportS3Prefixes": tt.prefixes}, Refs: map[string]string{}, Attrs: map[string]map[string]string{}}
		s.Conditions, _ = tmpl["Conditions"].(map[string]any)
		for name := range tmpl["Resources"].(map[string]any) {
			s.Refs[name] = name + "-ref"
			s.Attrs[name] = map[string]string{"Arn": "arn:aws:s3:::" + name}
		}
		ps, err := FunctionPolicies(tmpl, "ImportsFunction", s)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Evaluate(ps, Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::" + tt.key})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed != tt.want {
			t.Errorf("with ImportS3Prefixes %q the imports role reading %s: allowed %v, want %v", tt.prefixes, tt.key, d.Allowed, tt.want)
		}
	}
}

// simulator finds node and tools/iamsim's crosscheck.mjs, or skips (fails
// with BRIGHTRUN_REQUIRE_TOOLS=1).
func simulator(t *testing.T) (node, script string) {
	t.Helper()
	dir := filepath.Join("..", "..", "tools", "iamsim")
	node, err := exec.LookPath("node")
	missing := ""
	if err != nil {
		missing = "node is not on PATH"
	} else if _, err := os.Stat(filepath.Join(dir, "node_modules", "@cloud-copilot", "iam-simulate", "package.json")); err != nil {
		missing = "tools/iamsim/node_modules has no @cloud-copilot/iam-simulate (tools/setup.sh node installs it)"
	}
	if missing != "" {
		if os.Getenv("BRIGHTRUN_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%s; BRIGHTRUN_REQUIRE_TOOLS=1, so this is a failure", missing)
		}
		t.Skipf("%s; skipping", missing)
	}
	return node, filepath.Join(dir, "crosscheck.mjs")
}

// The published simulator decides the evaluator's own cases (conditions,
// NotResource, an explicit Deny) alike, and a decision it does not share is
// reported.
func TestCrossCheckAgreesAndReportsADisagreement(t *testing.T) {
	node, script := simulator(t)
	p := policy(t, `{"Version":"2012-10-17","Statement":[
		{"Sid":"Items","Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem"],"Resource":"`+table+`"},
		{"Sid":"OneIndex","Effect":"Allow","Action":"dynamodb:Query","Resource":"`+table+`/index/by_created"},
		{"Sid":"Objects","Effect":"Allow","Action":"s3:Get*","Resource":"arn:aws:s3:::b/datasets/*.jsonl"},
		{"Sid":"List","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":"datasets/*"}}},
		{"Sid":"NotSecret","Effect":"Allow","Action":"secretsmanager:GetSecretValue","NotResource":"arn:aws:secretsmanager:us-east-1:123456789012:secret:admin-*"},
		{"Sid":"NoPutOfReports","Effect":"Deny","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/reports/*"},
		{"Sid":"Uploads","Effect":"Allow","Action":"s3:PutObject","Resource":"arn:aws:s3:::b/*"}]}`)
	secret := "arn:aws:secretsmanager:us-east-1:123456789012:secret:"
	reqs := []Request{
		{Action: "dynamodb:GetItem", Resource: table},
		{Action: "dynamodb:DeleteItem", Resource: table},
		{Action: "dynamodb:Query", Resource: table + "/index/by_created"},
		{Action: "dynamodb:Query", Resource: table + "/index/by_user"},
		{Action: "dynamodb:Query", Resource: table},
		{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/datasets/x.jsonl"},
		{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/datasets/x.csv"},
		{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b", Context: map[string][]string{"s3:prefix": {"datasets/u1/"}}},
		{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b", Context: map[string][]string{"s3:prefix": {"reports/"}}},
		{Action: "s3:ListBucket", Resource: "arn:aws:s3:::b"},
		{Action: "secretsmanager:GetSecretValue", Resource: secret + "runpod-AbCdEf"},
		{Action: "secretsmanager:GetSecretValue", Resource: secret + "admin-AbCdEf"},
		{Action: "s3:PutObject", Resource: "arn:aws:s3:::b/uploads/x"},
		{Action: "s3:PutObject", Resource: "arn:aws:s3:::b/reports/x"},
	}
	f := CrossCheckFile{Account: acct, Principals: map[string]CrossCheckPrincipal{
		"u": {ARN: "arn:aws:iam::123456789012:user/u", Policies: []CrossCheckPolicy{{p[0].Name, p[0].Policy}}}}}
	allowed := 0
	for _, r := range reqs {
		d, err := Evaluate(p, r)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			allowed++
		}
		f.Requests = append(f.Requests, CrossCheckRequest{Principal: "u", Action: r.Action, Resource: r.Resource, Context: r.Context, Allowed: d.Allowed, What: r.String()})
	}
	if allowed == 0 || allowed == len(reqs) {
		t.Fatalf("%d of %d allowed: the cases should have both", allowed, len(reqs))
	}
	path := filepath.Join(t.TempDir(), "requests.json")
	disagree, err := RunCrossCheck(node, script, path, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(disagree) != 0 {
		t.Errorf("the simulator disagrees with Evaluate:\n%s", strings.Join(disagree, "\n"))
	}
	f.Requests[1].Allowed = true // DeleteItem, which no statement grants
	disagree, err = RunCrossCheck(node, script, path, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(disagree) != 1 || !strings.Contains(disagree[0], "dynamodb:DeleteItem") {
		t.Errorf("a wrong decision on DeleteItem: the cross-check reported %q", disagree)
	}
}
