package iamproof

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Account is where the emulated resources live.
type Account struct {
	Partition, Region, ID string
}

// Call is one AWS API call as the gateway sees it.
type Call struct {
	Service   string // dynamodb, sqs, s3, secretsmanager
	Operation string // the API operation, e.g. Query, PutObject
	AccessKey string // the caller's access key id
	Presigned bool   // authenticated by query parameters (a presigned URL)
	// Bucket and Key are set for S3 object calls.
	Bucket, Key string
	// Auth is what IAM checks for the call: every request must be allowed.
	Auth []Request
}

// AccessKey returns the access key id of a SigV4-signed request (header or
// presigned URL) and the service of its credential scope.
func AccessKey(r *http.Request) (key, service string, presigned bool) {
	cred := ""
	if a := r.Header.Get("Authorization"); a != "" {
		_, rest, ok := strings.Cut(a, "Credential=")
		if ok {
			cred, _, _ = strings.Cut(rest, ",")
		}
	} else if c := r.URL.Query().Get("X-Amz-Credential"); c != "" {
		cred, presigned = c, true
	}
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) < 4 {
		return "", "", presigned
	}
	return parts[0], parts[3], presigned
}

// Authorizations maps a request to the IAM authorization requests the
// Service Authorization Reference lists for its operation. secretARN turns
// a SecretId (name or ARN) into the secret's full ARN.
func Authorizations(r *http.Request, body []byte, acct Account, secretARN func(id string) string) (Call, error) {
	key, service, presigned := AccessKey(r)
	c := Call{AccessKey: key, Presigned: presigned, Service: service}
	if key == "" {
		return c, fmt.Errorf("%s %s is not signed with SigV4", r.Method, r.URL.Path)
	}
	target := r.Header.Get("X-Amz-Target")
	var err error
	switch service {
	case "dynamodb":
		c.Operation = afterDot(target)
		c.Auth, err = dynamoAuth(c.Operation, body, acct)
	case "sqs":
		c.Operation = afterDot(target)
		c.Auth, err = sqsAuth(c.Operation, body, acct)
	case "secretsmanager":
		c.Operation = afterDot(target)
		c.Auth, err = secretsAuth(c.Operation, body, secretARN)
	case "s3":
		err = s3Auth(&c, r, body, acct)
	default:
		err = fmt.Errorf("service %q is not mapped", service)
	}
	return c, err
}

func afterDot(target string) string { return target[strings.LastIndex(target, ".")+1:] }

func tableARN(acct Account, name string) string {
	if strings.HasPrefix(name, "arn:") {
		return name
	}
	return fmt.Sprintf("arn:%s:dynamodb:%s:%s:table/%s", acct.Partition, acct.Region, acct.ID, name)
}

func dynamoAuth(op string, body []byte, acct Account) ([]Request, error) {
	var in struct {
		TableName     string
		IndexName     string
		RequestItems  map[string]json.RawMessage
		TransactItems []map[string]struct {
			TableName string
		}
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("DynamoDB %s: %w", op, err)
	}
	switch op {
	case "BatchWriteItem", "BatchGetItem":
		var out []Request
		for t := range in.RequestItems {
			out = append(out, Request{Action: "dynamodb:" + op, Resource: tableARN(acct, t)})
		}
		return out, nil
	case "TransactWriteItems", "TransactGetItems":
		// No IAM action of their own: each item's action is checked.
		actions := map[string]string{"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
			"ConditionCheck": "ConditionCheckItem", "Get": "GetItem"}
		var out []Request
		for i, item := range in.TransactItems {
			for kind, x := range item {
				a, ok := actions[kind]
				if !ok {
					return nil, fmt.Errorf("DynamoDB %s item %d: unknown kind %s", op, i, kind)
				}
				out = append(out, Request{Action: "dynamodb:" + a, Resource: tableARN(acct, x.TableName)})
			}
		}
		return out, nil
	case "ListTables":
		return []Request{{Action: "dynamodb:ListTables", Resource: "*"}}, nil
	}
	if in.TableName == "" {
		return nil, fmt.Errorf("DynamoDB %s without a TableName is not mapped", op)
	}
	res := tableARN(acct, in.TableName)
	if in.IndexName != "" && (op == "Query" || op == "Scan") {
		res += "/index/" + in.IndexName
	}
	return []Request{{Action: "dynamodb:" + op, Resource: res}}, nil
}

func sqsAuth(op string, body []byte, acct Account) ([]Request, error) {
	var in struct{ QueueUrl, QueueName string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("SQS %s: %w", op, err)
	}
	name := in.QueueName
	if in.QueueUrl != "" {
		name = in.QueueUrl[strings.LastIndex(in.QueueUrl, "/")+1:]
	}
	action := strings.TrimSuffix(op, "Batch") // SendMessageBatch is sqs:SendMessage, and so on
	if op == "ListQueues" {
		return []Request{{Action: "sqs:ListQueues", Resource: "*"}}, nil
	}
	if name == "" {
		return nil, fmt.Errorf("SQS %s without a queue is not mapped", op)
	}
	return []Request{{Action: "sqs:" + action, Resource: fmt.Sprintf("arn:%s:sqs:%s:%s:%s", acct.Partition, acct.Region, acct.ID, name)}}, nil
}

func secretsAuth(op string, body []byte, secretARN func(string) string) ([]Request, error) {
	var in struct{ SecretId string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("Secrets Manager %s: %w", op, err)
	}
	if in.SecretId == "" {
		return nil, fmt.Errorf("Secrets Manager %s without a SecretId is not mapped", op)
	}
	return []Request{{Action: "secretsmanager:" + op, Resource: secretARN(in.SecretId)}}, nil
}

// s3Auth maps a path-style S3 REST request.
func s3Auth(c *Call, r *http.Request, body []byte, acct Account) error {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	c.Bucket, c.Key = bucket, key
	q := r.URL.Query()
	for k := range q { // the SDK's operation hint and a presigned URL's signature
		if k == "x-id" || strings.HasPrefix(k, "X-Amz-") {
			q.Del(k)
		}
	}
	has := func(k string) bool { _, ok := q[k]; return ok }
	bucketARN := fmt.Sprintf("arn:%s:s3:::%s", acct.Partition, bucket)
	objectARN := bucketARN + "/" + key
	one := func(op, action, res string) {
		c.Operation = op
		c.Auth = append(c.Auth, Request{Action: "s3:" + action, Resource: res})
	}
	if bucket == "" {
		one("ListBuckets", "ListAllMyBuckets", "*")
		return nil
	}
	if key == "" {
		switch {
		case r.Method == http.MethodGet && has("uploads"):
			one("ListMultipartUploads", "ListBucketMultipartUploads", bucketARN)
		case r.Method == http.MethodGet && has("versions"):
			one("ListObjectVersions", "ListBucketVersions", bucketARN)
		case r.Method == http.MethodGet && has("location"):
			one("GetBucketLocation", "GetBucketLocation", bucketARN)
		case r.Method == http.MethodGet && len(q) == 0 || r.Method == http.MethodGet && (has("list-type") || has("prefix") || has("delimiter") || has("max-keys") || has("marker") || has("continuation-token")):
			c.Operation = "ListObjectsV2"
			ctx := map[string][]string{}
			for param, ck := range map[string]string{"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"} {
				if has(param) {
					ctx[ck] = []string{q.Get(param)}
				}
			}
			c.Auth = append(c.Auth, Request{Action: "s3:ListBucket", Resource: bucketARN, Context: ctx})
		case r.Method == http.MethodHead:
			one("HeadBucket", "ListBucket", bucketARN)
		case r.Method == http.MethodPut && len(q) == 0:
			one("CreateBucket", "CreateBucket", bucketARN)
		case r.Method == http.MethodPost && has("delete"):
			var del struct {
				Objects []struct{ Key string } `xml:"Object"`
			}
			if err := xml.Unmarshal(body, &del); err != nil {
				return fmt.Errorf("S3 DeleteObjects: %w", err)
			}
			c.Operation = "DeleteObjects"
			for _, o := range del.Objects {
				c.Auth = append(c.Auth, Request{Action: "s3:DeleteObject", Resource: bucketARN + "/" + o.Key})
			}
		default:
			return fmt.Errorf("S3 %s /%s?%s is not mapped", r.Method, bucket, r.URL.RawQuery)
		}
		return nil
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case has("uploadId"):
			one("ListParts", "ListMultipartUploadParts", objectARN)
		case has("tagging"):
			one("GetObjectTagging", "GetObjectTagging", objectARN)
		case has("acl"):
			one("GetObjectAcl", "GetObjectAcl", objectARN)
		case has("attributes"):
			one("GetObjectAttributes", "GetObjectAttributes", objectARN)
		case has("versionId"):
			one("GetObject", "GetObjectVersion", objectARN)
		default:
			one("GetObject", "GetObject", objectARN)
		}
	case http.MethodHead:
		one("HeadObject", "GetObject", objectARN)
	case http.MethodPut:
		switch {
		case has("uploadId") && has("partNumber"):
			one("UploadPart", "PutObject", objectARN)
		case has("tagging"):
			one("PutObjectTagging", "PutObjectTagging", objectARN)
		case has("acl"):
			one("PutObjectAcl", "PutObjectAcl", objectARN)
		default:
			one("PutObject", "PutObject", objectARN)
			if r.Header.Get("X-Amz-Acl") != "" || q.Get("x-amz-acl") != "" {
				c.Auth = append(c.Auth, Request{Action: "s3:PutObjectAcl", Resource: objectARN})
			}
			if r.Header.Get("X-Amz-Tagging") != "" {
				c.Auth = append(c.Auth, Request{Action: "s3:PutObjectTagging", Resource: objectARN})
			}
		}
		if src := r.Header.Get("X-Amz-Copy-Source"); src != "" {
			src, _ = url.PathUnescape(strings.TrimPrefix(src, "/"))
			src, _, _ = strings.Cut(src, "?")
			c.Operation = "CopyObject"
			c.Auth = append(c.Auth, Request{Action: "s3:GetObject", Resource: fmt.Sprintf("arn:%s:s3:::%s", acct.Partition, src)})
		}
	case http.MethodPost:
		switch {
		case has("uploads"):
			one("CreateMultipartUpload", "PutObject", objectARN)
		case has("uploadId"):
			one("CompleteMultipartUpload", "PutObject", objectARN)
		default:
			return fmt.Errorf("S3 POST /%s/%s?%s is not mapped", bucket, key, r.URL.RawQuery)
		}
	case http.MethodDelete:
		switch {
		case has("uploadId"):
			one("AbortMultipartUpload", "AbortMultipartUpload", objectARN)
		case has("tagging"):
			one("DeleteObjectTagging", "DeleteObjectTagging", objectARN)
		case has("versionId"):
			one("DeleteObject", "DeleteObjectVersion", objectARN)
		default:
			one("DeleteObject", "DeleteObject", objectARN)
		}
	default:
		return fmt.Errorf("S3 %s /%s/%s is not mapped", r.Method, bucket, key)
	}
	return nil
}
