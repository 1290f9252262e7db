package iamproof

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
)

// CrossCheckFile is what the gateway hands to a second evaluator
// (tools/iamsim): every principal's policies and every authorization
// request it decided, with its decision.
type CrossCheckFile struct {
	Account    Account                        `json:"account"`
	Principals map[string]CrossCheckPrincipal `json:"principals"`
	Requests   []CrossCheckRequest            `json:"requests"`
	// Decisions counts the decisions the requests stand for (a request
	// decided several times is written once).
	Decisions int `json:"decisions"`
}

// CrossCheckPrincipal is one IAM user and the policies attached to it.
type CrossCheckPrincipal struct {
	ARN      string             `json:"arn"`
	Policies []CrossCheckPolicy `json:"policies"`
}

// CrossCheckRequest is one decided authorization request.
type CrossCheckRequest struct {
	Principal string              `json:"principal"`
	Action    string              `json:"action"`
	Resource  string              `json:"resource"`
	Context   map[string][]string `json:"context,omitempty"`
	Allowed   bool                `json:"allowed"`
	// What is the caller's description of the request, for messages.
	What string `json:"what"`
}

// CrossCheckResult is the second evaluator's answer for one request.
type CrossCheckResult struct {
	Index   int    `json:"index"`
	Result  string `json:"result"` // Allowed, ImplicitlyDenied, ExplicitlyDenied, or empty on error
	Allowed bool   `json:"allowed"`
	Error   string `json:"error,omitempty"`
}

// CrossCheckPolicy is a policy as iam-simulate takes it: {name, policy}.
type CrossCheckPolicy struct {
	Name   string `json:"name"`
	Policy Policy `json:"policy"`
}

// CrossCheck returns every decision the gateway made (with the policies of
// each principal that asked), for a second evaluator. Requests that could
// not be mapped or evaluated (Entry.Err) carry no decision and are left out;
// identical requests of the same principal are kept once.
func (g *Gateway) CrossCheck() CrossCheckFile {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := CrossCheckFile{Account: g.Account, Principals: map[string]CrossCheckPrincipal{}}
	byName := map[string][]CrossCheckPolicy{}
	for _, p := range g.principals {
		var ps []CrossCheckPolicy
		for _, np := range p.Policies {
			ps = append(ps, CrossCheckPolicy{np.Name, np.Policy})
		}
		byName[p.Name] = ps
	}
	seen := map[string]bool{}
	for _, e := range g.history {
		if e.Err != "" {
			continue
		}
		f.Decisions++
		k := e.Principal + " " + e.Request.String()
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, ok := f.Principals[e.Principal]; !ok {
			f.Principals[e.Principal] = CrossCheckPrincipal{
				ARN:      fmt.Sprintf("arn:%s:iam::%s:user/%s", g.Account.Partition, g.Account.ID, e.Principal),
				Policies: byName[e.Principal],
			}
		}
		f.Requests = append(f.Requests, CrossCheckRequest{Principal: e.Principal, Action: e.Request.Action,
			Resource: e.Request.Resource, Context: e.Request.Context, Allowed: e.Decision.Allowed, What: e.String()})
	}
	return f
}

// RunCrossCheck writes f to path, runs `node script path` (the script
// prints a JSON list of CrossCheckResult) and returns the requests on which
// the second evaluator disagrees with the gateway or could not decide, one
// description each.
func RunCrossCheck(node, script, path string, f CrossCheckFile) ([]string, error) {
	b, err := json.MarshalIndent(f, "", " ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(node, script, path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v\n%s", node, script, err, stderr.String())
	}
	var results []CrossCheckResult
	if err := json.Unmarshal(stdout.Bytes(), &results); err != nil {
		return nil, fmt.Errorf("%s's output: %v\n%s", script, err, stdout.String())
	}
	if len(results) != len(f.Requests) {
		return nil, fmt.Errorf("%s answered %d requests of %d", script, len(results), len(f.Requests))
	}
	var out []string
	sort.Slice(results, func(i, j int) bool { return results[i].Index < results[j].Index })
	for i, r := range results {
		req := f.Requests[i]
		switch {
		case r.Index != i:
			return nil, fmt.Errorf("%s answered request %d out of order", script, r.Index)
		case r.Error != "":
			out = append(out, fmt.Sprintf("%s: the simulator could not decide: %s", req.What, r.Error))
		case r.Allowed != req.Allowed:
			out = append(out, fmt.Sprintf("%s: the simulator says %s", req.What, r.Result))
		}
	}
	return out, nil
}
