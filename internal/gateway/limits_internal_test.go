package gateway

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted, err := ParsePrefixes([]string{"10.0.0.0/8", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		remote string
		xff    []string
		want   string
	}{
		{"203.0.113.7:4000", nil, "203.0.113.7:4000"},
		{"203.0.113.7:4000", []string{"1.2.3.4"}, "203.0.113.7:4000"}, // untrusted peer: header ignored
		{"127.0.0.1:5000", []string{"1.2.3.4"}, "1.2.3.4:0"},
		{"127.0.0.1:5000", []string{"6.6.6.6, 1.2.3.4, 10.1.1.1"}, "1.2.3.4:0"}, // right-most untrusted hop
		{"127.0.0.1:5000", []string{"6.6.6.6", "1.2.3.4"}, "1.2.3.4:0"},         // several headers
		{"127.0.0.1:5000", []string{"garbage, 1.2.3.4"}, "1.2.3.4:0"},
		{"127.0.0.1:5000", []string{"1.2.3.4, garbage"}, "127.0.0.1:5000"}, // a bad hop stops the walk
		{"127.0.0.1:5000", nil, "127.0.0.1:5000"},
		{"[::ffff:127.0.0.1]:5000", []string{"2001:db8::1"}, "[2001:db8::1]:0"},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := hostPort(clientAddr(r, trusted), "?"); got != c.want {
			t.Errorf("remote %s, X-Forwarded-For %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	if _, err := ParsePrefixes([]string{"not-an-ip"}); err == nil {
		t.Error("ParsePrefixes accepted not-an-ip")
	}
}

func TestAdmission(t *testing.T) {
	a := admission{max: 3, perIP: 2}
	ip1, ip2 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for _, ip := range []netip.Addr{ip1, ip1, ip2} {
		if err := a.admit(ip); err != nil {
			t.Fatalf("admit %s: %v", ip, err)
		}
	}
	if err := a.admit(ip2); err == nil || err.status != http.StatusServiceUnavailable {
		t.Errorf("4th connection: %v, want 503", err)
	}
	a.release(ip2)
	if err := a.admit(ip1); err == nil || err.status != http.StatusTooManyRequests {
		t.Errorf("3rd connection from %s: %v, want 429", ip1, err)
	}
	if err := a.admit(ip2); err != nil {
		t.Errorf("after a release: %v", err)
	}
	unlimited := admission{}
	for range 10 {
		if err := unlimited.admit(ip1); err != nil {
			t.Fatalf("no limits: %v", err)
		}
	}
}
