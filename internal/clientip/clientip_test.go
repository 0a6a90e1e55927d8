package clientip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestFromRequest(t *testing.T) {
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
		{"not-an-address", nil, "invalid AddrPort"},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := FromRequest(r, trusted).String(); got != c.want {
			t.Errorf("remote %s, X-Forwarded-For %q: %s, want %s", c.remote, c.xff, got, c.want)
		}
	}
	if _, err := ParsePrefixes([]string{"not-an-ip"}); err == nil {
		t.Error("ParsePrefixes accepted not-an-ip")
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(1, 3) // one a minute: no refill during the test
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for i := range 3 {
		if !l.Allow(a) {
			t.Fatalf("event %d of the burst refused", i+1)
		}
	}
	if l.Allow(a) {
		t.Error("an event over the burst allowed")
	}
	if !l.Allow(b) {
		t.Error("another address limited by the first one's events")
	}
	var none *Limiter = NewLimiter(0, 1)
	for range 100 {
		if !none.Allow(a) {
			t.Fatal("a limiter without a rate refused")
		}
	}
}
