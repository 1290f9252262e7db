package httpapi

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"
	"github.com/brightrun/brightrun/shared/pipeline"
)

// Authenticator tells who makes a request: the owner every record it
// touches is keyed by.
type Authenticator interface {
	Authenticate(r *http.Request) (owner string, err error)
}

// DevTokens authenticates static bearer tokens (the local stack's
// BRIGHTRUN_DEV_TOKENS). It maps token → owner.
type DevTokens map[string]string

// ParseDevTokens reads "user:token,user:token".
func ParseDevTokens(s string) (DevTokens, error) {
	out := DevTokens{}
	for i, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		user, token, ok := strings.Cut(pair, ":")
		if !ok || user == "" || token == "" {
			return nil, fmt.Errorf("dev token %d (%q) is not user:token", i+1, pair)
		}
		if err := checkOwner(user); err != nil {
			return nil, fmt.Errorf("dev token %d: %w", i+1, err)
		}
		out[token] = user
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no dev tokens in %q", s)
	}
	return out, nil
}

// Authenticate accepts "Authorization: Bearer <token>".
func (d DevTokens) Authenticate(r *http.Request) (string, error) {
	token, ok := bearer(r)
	if !ok {
		return "", pipeline.Errorf(pipeline.EUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
	}
	// Compare against every token in constant time per token.
	owner := ""
	for t, user := range d {
		if subtle.ConstantTimeCompare([]byte(t), []byte(token)) == 1 {
			owner = user
		}
	}
	if owner == "" {
		return "", pipeline.Errorf(pipeline.EUnauthorized, "unknown bearer token")
	}
	return owner, nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// APIGatewayJWT reads the owner from the claims API Gateway's JWT
// authorizer verified (the "sub" claim): the Lambda functions use it.
type APIGatewayJWT struct {
	// Claim names the claim holding the owner; default "sub".
	Claim string
}

// Authenticate reads the verified claim from the Lambda request context.
func (a APIGatewayJWT) Authenticate(r *http.Request) (string, error) {
	claim := a.Claim
	if claim == "" {
		claim = "sub"
	}
	rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context())
	if !ok || rc.Authorizer == nil || rc.Authorizer.JWT == nil {
		return "", pipeline.Errorf(pipeline.EUnauthorized, "no verified token on this request")
	}
	owner := rc.Authorizer.JWT.Claims[claim]
	if err := checkOwner(owner); err != nil {
		return "", pipeline.Errorf(pipeline.EUnauthorized, "the token's %s claim is not usable: %v", claim, err)
	}
	return owner, nil
}

// checkOwner bounds what an owner id may be: it becomes part of keys.
func checkOwner(owner string) error {
	if owner == "" || len(owner) > 128 {
		return fmt.Errorf("user id must be 1..128 bytes")
	}
	for _, r := range owner {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("user id %q must be printable ASCII without spaces", owner)
		}
	}
	return nil
}
