package netguard_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/brightrun/brightrun/shared/netguard"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr  string
		cloud bool // allowed by the cloud policy
		local bool // allowed by the local stack's policy
	}{
		{"93.184.215.14", true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true},
		{"127.0.0.1", false, true},
		{"127.9.9.9", false, true},
		{"::1", false, true},
		{"::ffff:127.0.0.1", false, true},
		{"10.0.0.1", false, false},
		{"172.16.5.4", false, false},
		{"192.168.1.1", false, false},
		{"fd00:ec2::254", false, false}, // the metadata service over IPv6
		{"169.254.169.254", false, false},
		{"::ffff:169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"100.64.0.1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"198.18.0.1", false, false},
		{"64:ff9b::a00:1", false, false}, // NAT64 of 10.0.0.1
		{"2002:a00:1::", false, false},   // 6to4 of 10.0.0.1
		{"::a00:1", false, false},        // IPv4-compatible 10.0.0.1
		{"2001:0:a00:1::", false, false}, // Teredo
		{"fec0::1", false, false},        // site-local
	}
	for _, tt := range tests {
		addr := netip.MustParseAddr(tt.addr)
		if err := netguard.Cloud.CheckAddr(addr); (err == nil) != tt.cloud {
			t.Errorf("Cloud.CheckAddr(%s) = %v, want allowed %v", tt.addr, err, tt.cloud)
		} else if err != nil && !errors.Is(err, netguard.ErrForbidden) {
			t.Errorf("Cloud.CheckAddr(%s) = %v, want ErrForbidden", tt.addr, err)
		}
		if err := netguard.Local.CheckAddr(addr); (err == nil) != tt.local {
			t.Errorf("Local.CheckAddr(%s) = %v, want allowed %v", tt.addr, err, tt.local)
		}
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url          string
		cloud, local bool
		why          string
	}{
		{"https://example.com/data.jsonl", true, true, ""},
		{"https://93.184.215.14/x", true, true, ""},
		{"http://example.com/data.jsonl", false, false, "plain http"},
		{"http://127.0.0.1:8080/x", false, true, "plain http"},
		{"http://localhost:8080/x", false, true, "plain http"},
		{"https://127.0.0.1/x", false, true, "loopback"},
		{"https://[::1]/x", false, true, "loopback"},
		{"https://169.254.169.254/latest/meta-data/", false, false, "link-local"},
		{"https://10.1.2.3/x", false, false, "private"},
		{"ftp://example.com/x", false, false, "scheme"},
		{"file:///etc/passwd", false, false, "scheme"},
		{"https://user:pw@example.com/x", false, false, "user name"},
		{"https:///x", false, false, "no host"},
		{"example.com/x", false, false, "scheme"},
		{"http://10.0.0.1/x", false, false, "plain http"},
	}
	for _, tt := range tests {
		for _, c := range []struct {
			name string
			p    netguard.Policy
			want bool
		}{{"Cloud", netguard.Cloud, tt.cloud}, {"Local", netguard.Local, tt.local}} {
			_, err := c.p.CheckURL(tt.url)
			if (err == nil) != c.want {
				t.Errorf("%s.CheckURL(%q) = %v, want allowed %v", c.name, tt.url, err, c.want)
			}
			if err != nil && tt.why != "" && !strings.Contains(err.Error(), tt.why) {
				t.Errorf("%s.CheckURL(%q) = %v, want it to say %q", c.name, tt.url, err, tt.why)
			}
		}
	}
}

func TestTheClientChecksTheAddressItConnectsTo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/loop" {
			http.Redirect(w, r, "/loop", http.StatusFound)
			return
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]

	t.Run("a name that resolves to loopback is refused at connect time in the cloud", func(t *testing.T) {
		// CheckURL cannot know where localhost points; the dialler does.
		if _, err := netguard.Cloud.CheckURL("https://localhost" + port + "/"); err != nil {
			t.Fatalf("CheckURL refused a host name before resolving it: %v", err)
		}
		_, err := netguard.Cloud.Client(5 * time.Second).Get("https://localhost" + port + "/")
		if !errors.Is(err, netguard.ErrForbidden) {
			t.Fatalf("GET https://localhost = %v, want ErrForbidden", err)
		}
	})
	t.Run("the local stack reaches loopback", func(t *testing.T) {
		resp, err := netguard.Local.Client(5 * time.Second).Get(srv.URL + "/")
		if err != nil {
			t.Fatalf("GET %s: %v", srv.URL, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a redirect to a private address is refused", func(t *testing.T) {
		_, err := netguard.Local.Client(5 * time.Second).Get(srv.URL + "/redirect?to=" + url.QueryEscape("http://10.0.0.1/x?X-Amz-Signature=SECRET"))
		if !errors.Is(err, netguard.ErrForbidden) {
			t.Fatalf("redirect to 10.0.0.1 = %v, want ErrForbidden", err)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) && strings.Contains(uerr.Err.Error(), "SECRET") {
			t.Errorf("the refusal %q shows the redirect's query", uerr.Err)
		}
	})
	t.Run("a redirect to a name resolving to a private address is refused when dialled", func(t *testing.T) {
		_, err := netguard.Cloud.Client(5 * time.Second).Get(srv.URL + "/redirect?to=https://localhost" + port + "/")
		if err == nil {
			t.Fatal("the cloud client followed a redirect to localhost")
		}
	})
	t.Run("redirects are followed a bounded number of times", func(t *testing.T) {
		_, err := netguard.Local.Client(5 * time.Second).Get(srv.URL + "/loop")
		if err == nil || !strings.Contains(err.Error(), "redirects") {
			t.Fatalf("a redirect loop = %v, want stopped after redirects", err)
		}
	})
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{"https://example.com/x", "http://127.0.0.1:1/", "https://[::ffff:10.0.0.1]/", "https://169.254.169.254/", "https://u@h/", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := netguard.Cloud.CheckURL(raw)
		if err != nil {
			return
		}
		if u.Scheme != "https" {
			t.Fatalf("CheckURL(%q) accepted scheme %q", raw, u.Scheme)
		}
		if addr, err := netip.ParseAddr(u.Hostname()); err == nil {
			if netguard.Cloud.CheckAddr(addr) != nil {
				t.Fatalf("CheckURL(%q) accepted a forbidden address %s", raw, addr)
			}
		}
	})
}
