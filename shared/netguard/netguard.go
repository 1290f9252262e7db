// Package netguard makes the server's outbound HTTP requests (dataset
// imports from a user's URL, webhook deliveries to a user's endpoint) safe
// against server-side request forgery: a user-given URL must not reach the
// deployment's own network, its metadata service or loopback.
//
// The check runs where it cannot be dodged: on every connection, after DNS
// resolution, on the address actually dialled (net.Dialer.Control). A
// name that resolves to a private address, a redirect to one, and a DNS
// answer that changes between a check and the connect (DNS rebinding) are
// all refused there. CheckURL checks a URL's shape before anything is
// stored, so that a user hears of a bad URL when registering it; it is not
// the guard.
//
// The cloud policy refuses loopback, private (RFC 1918, unique local),
// link-local (the 169.254.169.254 metadata service among them), carrier-
// grade NAT, unspecified, multicast, broadcast, benchmarking and
// documentation addresses, and requires https. The local stack's policy
// allows loopback and plain http to a loopback host, so that the whole
// pipeline runs and is tested on one machine; it still refuses every other
// private address.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Policy says which destinations outbound requests may reach.
type Policy struct {
	// AllowLoopback admits 127.0.0.0/8 and ::1, and plain http to them
	// (the local stack; never set in the cloud).
	AllowLoopback bool
}

// Cloud is the deployed policy: public https destinations only.
var Cloud = Policy{}

// Local is the local stack's policy: Cloud plus loopback.
var Local = Policy{AllowLoopback: true}

// ErrForbidden is wrapped by every refusal of a destination.
var ErrForbidden = errors.New("destination not allowed")

// blocked lists the special-purpose ranges no user URL may reach, beyond
// what netip.Addr's predicates name (private, loopback, link-local,
// multicast, unspecified).
var blocked = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("::/96"),           // IPv4-compatible: embeds an IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo: tunnels to an IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated, still routed on some networks)
}

// CheckAddr says whether the policy lets a connection reach addr, and why
// not when it does not.
func (p Policy) CheckAddr(addr netip.Addr) error {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return fmt.Errorf("%w: no address", ErrForbidden)
	}
	addr = addr.WithZone("")
	switch {
	case addr.IsLoopback():
		if p.AllowLoopback {
			return nil
		}
		return fmt.Errorf("%w: %s is a loopback address", ErrForbidden, addr)
	case addr.IsPrivate():
		return fmt.Errorf("%w: %s is a private address", ErrForbidden, addr)
	case addr.IsLinkLocalUnicast(), addr.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address (the metadata service's range)", ErrForbidden, addr)
	case addr.IsUnspecified():
		return fmt.Errorf("%w: %s is the unspecified address", ErrForbidden, addr)
	case addr.IsMulticast(), addr.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: %s is a multicast address", ErrForbidden, addr)
	}
	for _, b := range blocked {
		if b.Contains(addr) {
			return fmt.Errorf("%w: %s is a special-purpose address (%s)", ErrForbidden, addr, b)
		}
	}
	return nil
}

// CheckURL checks a user-given URL's shape: absolute, https (or http to
// a loopback host where loopback is allowed), a host, no user
// information, and, when the host is an IP literal, an allowed address.
// A host name is checked again, resolved, on every connection.
func (p Policy) CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%w: scheme %q: only https", ErrForbidden, u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: the URL has no host", ErrForbidden)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: the URL holds a user name or password", ErrForbidden)
	}
	if u.Scheme == "http" && !(p.AllowLoopback && isLoopbackHost(host)) {
		return nil, fmt.Errorf("%w: plain http: only https", ErrForbidden)
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if err := p.CheckAddr(addr); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.Unmap().IsLoopback()
}

// control is the dialer's last word: the address about to be connected
// to, after resolution, every time.
func (p Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read dialled address %q", ErrForbidden, address)
	}
	return p.CheckAddr(ap.Addr())
}

// DialContext dials as net.Dialer does, refusing every connection the
// policy does not allow.
func (p Policy) DialContext(timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.control}
	return d.DialContext
}

// Display is u for logs and messages: scheme, host and path, without user
// information, query or fragment (a presigned URL's signature, a token).
func Display(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// MaxRedirects is how many redirects a guarded client follows.
const MaxRedirects = 5

// Client returns an HTTP client whose every connection, redirects
// included, the policy allows. It ignores proxy settings (a proxy would
// connect for us, unchecked), follows at most MaxRedirects redirects, each
// checked by CheckURL, and gives up on a whole request after timeout
// (0: no limit but the caller's context).
func (p Policy) Client(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           p.DialContext(10 * time.Second),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			if _, err := p.CheckURL(req.URL.String()); err != nil {
				return fmt.Errorf("redirect to %s: %w", Display(req.URL), err)
			}
			return nil
		},
	}
}
