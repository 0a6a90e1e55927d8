package gateway

import (
	"net/http"
	"net/netip"
	"testing"
)

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
