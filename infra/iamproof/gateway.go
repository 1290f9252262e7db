package iamproof

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Principal is an IAM user: the name its policies are attached to.
type Principal struct {
	Name     string
	Policies []NamedPolicy
}

// Entry is one authorization decision the gateway made.
type Entry struct {
	Principal string
	AccessKey string
	Service   string
	Operation string
	Presigned bool
	Request   Request
	Decision  Decision
	// Implied marks S3's own check of s3:ListBucket when an object is
	// missing: allowed, the caller learns 404 (NoSuchKey); denied, 403.
	Implied bool
	// Err is set when the request could not be mapped or evaluated.
	Err string
}

func (e Entry) String() string {
	verdict := "DENIED"
	if e.Decision.Allowed {
		verdict = "allowed"
	}
	s := fmt.Sprintf("%s %s.%s: %s %s", e.Principal, e.Service, e.Operation, e.Request, verdict)
	if e.Implied {
		s += " (S3's ListBucket check for a missing object)"
	}
	if e.Err != "" {
		s += " error: " + e.Err
	}
	return s
}

// Gateway authorizes every call by its caller's policies, then forwards the
// allowed ones to the emulator at Upstream.
type Gateway struct {
	Upstream *url.URL
	Account  Account
	// SecretARN turns a SecretId into the secret's ARN.
	SecretARN func(id string) string

	proxy *httputil.ReverseProxy

	mu         sync.Mutex
	principals map[string]Principal // by access key id
	log        []Entry
	history    []Entry // every decision, including those Forget drops from log
}

// NewGateway returns a gateway in front of upstream.
func NewGateway(upstream *url.URL, acct Account, secretARN func(string) string) *Gateway {
	g := &Gateway{Upstream: upstream, Account: acct, SecretARN: secretARN, principals: map[string]Principal{}}
	g.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.URL.Path, pr.Out.URL.RawPath = pr.In.URL.Path, pr.In.URL.RawPath
			pr.Out.Host = pr.In.Host
		},
		ModifyResponse: g.missingObject,
	}
	return g
}

// SetPrincipal makes the access key act for p.
func (g *Gateway) SetPrincipal(accessKey string, p Principal) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.principals[accessKey] = p
}

// Log returns the decisions made since the last Reset.
func (g *Gateway) Log() []Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Entry(nil), g.log...)
}

func (g *Gateway) record(e Entry) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.log = append(g.log, e)
	g.history = append(g.history, e)
}

type callKey struct{}

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	call, err := Authorizations(r, body, g.Account, g.SecretARN)
	g.mu.Lock()
	p, known := g.principals[call.AccessKey]
	g.mu.Unlock()
	if err != nil || !known {
		if err == nil {
			err = fmt.Errorf("access key %q belongs to no principal of the proof", call.AccessKey)
		}
		g.record(Entry{Principal: p.Name, AccessKey: call.AccessKey, Service: call.Service, Operation: call.Operation, Presigned: call.Presigned, Err: err.Error()})
		deny(w, g.Account, call, p, Request{Action: call.Service + ":" + call.Operation}, err.Error())
		return
	}
	for _, req := range call.Auth {
		d, err := Evaluate(p.Policies, req)
		e := Entry{Principal: p.Name, AccessKey: call.AccessKey, Service: call.Service, Operation: call.Operation, Presigned: call.Presigned, Request: req, Decision: d}
		if err != nil {
			e.Err = err.Error()
		}
		g.record(e)
		if err != nil || !d.Allowed {
			deny(w, g.Account, call, p, req, e.Err)
			return
		}
	}
	g.proxy.ServeHTTP(w, r.WithContext(contextWithCall(r, call, p)))
}

// missingObject applies S3's rule for a missing object: the caller learns
// that it is missing (404) only with s3:ListBucket on the bucket; otherwise
// S3 answers 403 AccessDenied. The check carries no s3:prefix: a GET or
// HEAD of an object has no prefix parameter.
func (g *Gateway) missingObject(resp *http.Response) error {
	call, p, ok := callFrom(resp.Request)
	if !ok || call.Service != "s3" || resp.StatusCode != http.StatusNotFound || (call.Operation != "GetObject" && call.Operation != "HeadObject") {
		return nil
	}
	req := Request{Action: "s3:ListBucket", Resource: fmt.Sprintf("arn:%s:s3:::%s", g.Account.Partition, call.Bucket)}
	d, err := Evaluate(p.Policies, req)
	e := Entry{Principal: p.Name, AccessKey: call.AccessKey, Service: call.Service, Operation: call.Operation, Presigned: call.Presigned, Request: req, Decision: d, Implied: true}
	if err != nil {
		e.Err = err.Error()
	}
	g.record(e)
	if d.Allowed {
		return nil
	}
	_ = resp.Body.Close()
	body := s3Denied(call.Operation != "HeadObject")
	resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header = http.Header{"Content-Type": {"application/xml"}, "Content-Length": {strconv.Itoa(len(body))}}
	return nil
}

type callAndPrincipal struct {
	call Call
	p    Principal
}

func contextWithCall(r *http.Request, c Call, p Principal) context.Context {
	return context.WithValue(r.Context(), callKey{}, callAndPrincipal{c, p})
}

func callFrom(r *http.Request) (Call, Principal, bool) {
	if r == nil {
		return Call{}, Principal{}, false
	}
	v, ok := r.Context().Value(callKey{}).(callAndPrincipal)
	return v.call, v.p, ok
}

func s3Denied(withBody bool) []byte {
	if !withBody {
		return nil
	}
	b, _ := xml.Marshal(struct {
		XMLName xml.Name `xml:"Error"`
		Code    string
		Message string
	}{Code: "AccessDenied", Message: "Access Denied"})
	return append([]byte(xml.Header), b...)
}

// deny answers as the service answers an unauthorized call.
func deny(w http.ResponseWriter, acct Account, call Call, p Principal, req Request, detail string) {
	if call.Service == "s3" {
		body := s3Denied(call.Operation != "HeadObject")
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(body)
		return
	}
	msg := fmt.Sprintf("User: arn:%s:iam::%s:user/%s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
		acct.Partition, acct.ID, p.Name, req.Action, req.Resource, req.Action)
	if detail != "" {
		msg += " (" + detail + ")"
	}
	ct := "application/x-amz-json-1.0"
	if call.Service == "secretsmanager" {
		ct = "application/x-amz-json-1.1"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Amzn-Query-Error", "AccessDenied;Sender")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazon.coral.service#AccessDeniedException", "message": msg})
}

// Denied returns the entries that were denied or could not be decided.
func Denied(log []Entry) []Entry {
	var out []Entry
	for _, e := range log {
		if !e.Decision.Allowed || e.Err != "" {
			out = append(out, e)
		}
	}
	return out
}

// Summary lists entries one a line, for failure messages.
func Summary(log []Entry) string {
	var b strings.Builder
	for _, e := range log {
		b.WriteString("  " + e.String() + "\n")
	}
	return b.String()
}

// Forget drops the decisions made for an access key.
func (g *Gateway) Forget(accessKey string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	kept := g.log[:0]
	for _, e := range g.log {
		if e.AccessKey != accessKey {
			kept = append(kept, e)
		}
	}
	g.log = kept
}
