// Package iamproof proves template.yaml's IAM policies by running: it
// expands each function's policies as SAM does, evaluates them as IAM
// evaluates identity-based policies, and puts an authorizing gateway in
// front of an AWS emulator so that every DynamoDB, SQS, S3 and Secrets
// Manager call a function makes is allowed or denied by its own policy.
//
// Why a gateway and not the emulator's own enforcement: moto's
// (INITIAL_NO_AUTH_ACTION_COUNT) checks DynamoDB and Secrets Manager calls
// against the resource "*", so a statement naming a table, an index or a
// secret never matches and a least-privilege policy is denied everything;
// it checks TransactWriteItems as an action of its own (IAM checks each
// item's PutItem / UpdateItem / DeleteItem / ConditionCheckItem); it
// evaluates no condition keys of S3 (s3:prefix), answers 500 to presigned
// URLs, and rejects a signed ListObjectsV2 with a prefix (moto 5.2.1,
// checked 2026-12). The gateway maps each request to the authorization
// requests the service reference lists for it (Authorizations) and
// evaluates them (Evaluate); moto still holds the users, their access keys
// and their policy documents (its IAM API validates the documents), and
// serves the calls that are allowed.
//
// The gateway's decisions are cross-checked with a published simulator,
// @cloud-copilot/iam-simulate (tools/iamsim): CrossCheck collects every
// request it decided and RunCrossCheck has the simulator decide them too.
package iamproof

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Policy is an IAM policy document.
type Policy struct {
	Version   string      `json:"Version,omitempty"`
	Statement []Statement `json:"Statement"`
}

// Statement is one statement of a policy. Action, Resource and their Not
// forms accept a string or a list, as IAM does.
type Statement struct {
	Sid         string                        `json:"Sid,omitempty"`
	Effect      string                        `json:"Effect"`
	Action      Strings                       `json:"Action,omitempty"`
	NotAction   Strings                       `json:"NotAction,omitempty"`
	Resource    Strings                       `json:"Resource,omitempty"`
	NotResource Strings                       `json:"NotResource,omitempty"`
	Condition   map[string]map[string]Strings `json:"Condition,omitempty"`
}

// Strings is a JSON string or list of strings.
type Strings []string

// UnmarshalJSON accepts "x" or ["x", ...].
func (s *Strings) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = Strings{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings, got %s", b)
	}
	*s = many
	return nil
}

// UnmarshalJSON accepts a statement or a list of statements.
func (p *Policy) UnmarshalJSON(b []byte) error {
	var raw struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	p.Version = raw.Version
	if len(raw.Statement) > 0 && raw.Statement[0] == '{' {
		var st Statement
		if err := json.Unmarshal(raw.Statement, &st); err != nil {
			return err
		}
		p.Statement = []Statement{st}
		return nil
	}
	return json.Unmarshal(raw.Statement, &p.Statement)
}

// Request is one authorization request: what IAM checks for (part of) an
// API call.
type Request struct {
	Action   string // service:Action, e.g. dynamodb:Query
	Resource string // the resource's ARN
	// Context holds the request's condition keys (lower case) and values.
	Context map[string][]string
}

func (r Request) String() string {
	s := r.Action + " " + r.Resource
	if len(r.Context) > 0 {
		b, _ := json.Marshal(r.Context)
		s += " " + string(b)
	}
	return s
}

// Grant names one statement's grant that allowed a request: the policy,
// the statement, and the action and resource patterns that matched.
type Grant struct {
	Policy    string
	Statement int
	Sid       string
	Action    string
	Resource  string
}

func (g Grant) String() string {
	sid := g.Sid
	if sid == "" {
		sid = fmt.Sprintf("#%d", g.Statement)
	}
	return fmt.Sprintf("%s/%s: %s on %s", g.Policy, sid, g.Action, g.Resource)
}

// Decision is the outcome of evaluating a request.
type Decision struct {
	Allowed bool
	// ExplicitDeny is set when a Deny statement matched.
	ExplicitDeny bool
	// Grants are the Allow grants that matched (none when denied).
	Grants []Grant
}

// NamedPolicy is a policy with the name it is attached under.
type NamedPolicy struct {
	Name   string
	Policy Policy
}

// Evaluate decides a request against identity-based policies the way IAM
// does within one account with no boundaries or organisation policies: an
// explicit Deny wins, then any Allow, else the request is implicitly
// denied. It returns an error for what it does not implement (a condition
// operator it does not know, a policy variable) instead of guessing.
func Evaluate(policies []NamedPolicy, req Request) (Decision, error) {
	var d Decision
	for _, p := range policies {
		for i, st := range p.Policy.Statement {
			action, ok := matchAny(st.Action, st.NotAction, req.Action, matchAction)
			if !ok {
				continue
			}
			resource, ok := matchAny(st.Resource, st.NotResource, req.Resource, matchARN)
			if !ok {
				continue
			}
			cond, err := conditionsHold(st.Condition, req.Context)
			if err != nil {
				return Decision{}, fmt.Errorf("%s statement %d (%s): %w", p.Name, i, st.Sid, err)
			}
			if !cond {
				continue
			}
			switch st.Effect {
			case "Deny":
				return Decision{ExplicitDeny: true}, nil
			case "Allow":
				d.Grants = append(d.Grants, Grant{Policy: p.Name, Statement: i, Sid: st.Sid, Action: action, Resource: resource})
			default:
				return Decision{}, fmt.Errorf("%s statement %d (%s): Effect %q is neither Allow nor Deny", p.Name, i, st.Sid, st.Effect)
			}
		}
	}
	d.Allowed = len(d.Grants) > 0
	return d, nil
}

// matchAny matches value against the patterns of an element or, when the
// statement has the Not form instead, against none of them. It returns the
// pattern that matched ("Not…" for the Not form).
func matchAny(patterns, notPatterns Strings, value string, match func(p, v string) bool) (string, bool) {
	if len(patterns) > 0 {
		for _, p := range patterns {
			if match(p, value) {
				return p, true
			}
		}
		return "", false
	}
	if len(notPatterns) > 0 {
		for _, p := range notPatterns {
			if match(p, value) {
				return "", false
			}
		}
		return "Not" + strings.Join(notPatterns, ","), true
	}
	return "", false
}

// glob matches IAM wildcards: * any run of characters, ? one character.
func glob(pattern, s string, fold bool) bool {
	if fold {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
	re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(pattern)) + "$"
	return regexp.MustCompile("(?s)" + re).MatchString(s)
}

// matchAction compares service:Action case-insensitively, with wildcards.
func matchAction(pattern, action string) bool { return glob(pattern, action, true) }

// matchARN compares ARNs part by part (partition, service, region,
// account, resource), each with wildcards; "*" matches everything.
func matchARN(pattern, arn string) bool {
	if pattern == "*" {
		return true
	}
	pp, ap := strings.SplitN(pattern, ":", 6), strings.SplitN(arn, ":", 6)
	if len(pp) != 6 || len(ap) != 6 {
		return glob(pattern, arn, false)
	}
	for i := range pp {
		if !glob(pp[i], ap[i], false) {
			return false
		}
	}
	return true
}

var policyVariable = regexp.MustCompile(`\$\{[^}]*\}`)

// conditionsHold evaluates a statement's Condition block: every operator
// and every key in it must hold.
func conditionsHold(cond map[string]map[string]Strings, ctx map[string][]string) (bool, error) {
	for op, keys := range cond {
		for key, want := range keys {
			for _, w := range want {
				if policyVariable.MatchString(w) {
					return false, fmt.Errorf("condition %s %s: policy variables (%s) are not implemented", op, key, w)
				}
			}
			got, present := ctx[strings.ToLower(key)]
			ok, err := conditionHolds(op, want, got, present)
			if err != nil {
				return false, fmt.Errorf("condition %s on %s: %w", op, key, err)
			}
			if !ok {
				return false, nil
			}
		}
	}
	return true, nil
}

func conditionHolds(op string, want []string, got []string, present bool) (bool, error) {
	set := ""
	if s, rest, ok := strings.Cut(op, ":"); ok {
		set, op = s, rest
	}
	ifExists := strings.HasSuffix(op, "IfExists")
	op = strings.TrimSuffix(op, "IfExists")
	if op == "Null" {
		if len(want) != 1 {
			return false, fmt.Errorf("Null takes one value")
		}
		return (want[0] == "true") == !present, nil
	}
	var match func(w, g string) bool
	negated := false
	switch op {
	case "StringEquals", "ArnEquals":
		match = func(w, g string) bool { return w == g }
	case "StringNotEquals", "ArnNotEquals":
		match, negated = func(w, g string) bool { return w == g }, true
	case "StringEqualsIgnoreCase":
		match = strings.EqualFold
	case "StringNotEqualsIgnoreCase":
		match, negated = strings.EqualFold, true
	case "StringLike":
		match = func(w, g string) bool { return glob(w, g, false) }
	case "StringNotLike":
		match, negated = func(w, g string) bool { return glob(w, g, false) }, true
	case "ArnLike":
		match = matchARN
	case "ArnNotLike":
		match, negated = matchARN, true
	case "Bool":
		match = strings.EqualFold
	default:
		return false, fmt.Errorf("operator %s is not implemented", op)
	}
	if !present {
		return ifExists || negated, nil
	}
	anyMatch := func(g string) bool {
		for _, w := range want {
			if match(w, g) {
				return true
			}
		}
		return false
	}
	switch set {
	case "", "ForAnyValue":
		for _, g := range got {
			if anyMatch(g) {
				return !negated, nil
			}
		}
		return negated, nil
	case "ForAllValues":
		for _, g := range got {
			if anyMatch(g) == negated {
				return false, nil
			}
		}
		return true, nil
	}
	return false, fmt.Errorf("set operator %s is not implemented", set)
}
