package infra_test

import (
	"slices"
	"strings"
	"testing"
)

// The web console is served by CloudFront from a private bucket that only
// the distribution may read (origin access control), signs in with the
// stack's user pool through the hosted UI (a public client, code flow,
// redirecting to the console), and is the only origin browsers may call
// the API and upload from unless CorsAllowedOrigins says otherwise.
func TestTheConsoleIsServedPrivatelyAndIsTheAPIsOnlyBrowserOrigin(t *testing.T) {
	m := load(t)
	const origin = "!Sub https://${ConsoleDistribution.DomainName}"

	bucket, _ := m.resource(t, "ConsoleBucket")["Properties"].(map[string]any)
	if got := canonical(bucket["PublicAccessBlockConfiguration"]); got != `{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}` {
		t.Errorf("ConsoleBucket must block all public access, got %s", got)
	}
	policy := canonical(dig(m.resource(t, "ConsoleBucketPolicy"), "Properties", "PolicyDocument"))
	for _, want := range []string{`"Principal":{"Service":"cloudfront.amazonaws.com"}`, `distribution/${ConsoleDistribution}`, `"Action":"s3:GetObject"`} {
		if !strings.Contains(policy, want) {
			t.Errorf("ConsoleBucketPolicy lacks %s: only this distribution may read the files\n%s", want, policy)
		}
	}
	dist := dig(m.resource(t, "ConsoleDistribution"), "Properties", "DistributionConfig")
	origins := asAnySlice(dig(dist, "Origins"))
	if len(origins) != 1 || dig(origins[0], "OriginAccessControlId") != "!GetAtt ConsoleOriginAccessControl.Id" {
		t.Errorf("ConsoleDistribution's origin must read the bucket through ConsoleOriginAccessControl, got %s", canonical(origins))
	}
	if dig(dist, "DefaultCacheBehavior", "ViewerProtocolPolicy") != "redirect-to-https" || dig(dist, "DefaultRootObject") != "index.html" {
		t.Errorf("ConsoleDistribution must serve index.html at / over HTTPS only")
	}
	csp, _ := dig(m.resource(t, "ConsoleHeadersPolicy"), "Properties", "ResponseHeadersPolicyConfig", "SecurityHeadersConfig", "ContentSecurityPolicy", "ContentSecurityPolicy").(string)
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("the console's Content-Security-Policy = %q, want nothing but its own scripts", csp)
	}

	client, _ := m.resource(t, "ConsoleUserPoolClient")["Properties"].(map[string]any)
	if client["GenerateSecret"] != false || !slices.Equal(asStrings(client["AllowedOAuthFlows"]), []string{"code"}) {
		t.Errorf("ConsoleUserPoolClient must be a public client of the code flow (PKCE), got secret %v flows %v", client["GenerateSecret"], client["AllowedOAuthFlows"])
	}
	if cb := asStrings(client["CallbackURLs"]); len(cb) != 1 || cb[0] != origin+"/" {
		t.Errorf("ConsoleUserPoolClient's callback URLs = %v, want the console's URL alone", cb)
	}
	if dig(m.resource(t, "UserPoolDomain"), "Properties", "UserPoolId") != "!Ref UserPool" {
		t.Errorf("the hosted UI's domain must belong to the stack's user pool")
	}

	api, _ := m.resource(t, "HttpApi")["Properties"].(map[string]any)
	audience := canonical(dig(api, "Auth", "Authorizers", "Jwt", "JwtConfiguration", "audience"))
	if !strings.Contains(audience, "!Ref ConsoleUserPoolClient") {
		t.Errorf("the API's JWT audience %s must accept the console's client", audience)
	}
	for name, cors := range map[string]any{
		"HttpApi":       dig(api, "CorsConfiguration", "AllowOrigins"),
		"DatasetBucket": dig(asAnySlice(dig(m.resource(t, "DatasetBucket"), "Properties", "CorsConfiguration", "CorsRules"))[0], "AllowedOrigins"),
	} {
		got := canonical(cors)
		if !strings.Contains(got, "HasCorsAllowedOrigins") || !strings.Contains(got, origin) || strings.Contains(got, `"*"`) {
			t.Errorf("%s's CORS origins = %s, want the console's origin unless CorsAllowedOrigins names others", name, got)
		}
	}
	if def := dig(m.raw, "Parameters", "CorsAllowedOrigins", "Default"); def != "" {
		t.Errorf("CorsAllowedOrigins defaults to %q, want empty (the console's origin alone)", def)
	}
	for _, out := range []string{"ConsoleUrl", "ConsoleBucketName", "ConsoleUserPoolClientId", "ConsoleSignInDomain"} {
		if dig(m.raw, "Outputs", out) == nil {
			t.Errorf("output %s is missing: tools/consolepublish reads it", out)
		}
	}
}
