package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"golang.org/x/time/rate"
)

// admission counts open connections, in all and per client IP, and refuses
// those above the limits.
type admission struct {
	max, perIP int // non-positive: no limit

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
}

// admitError is a refused connection: the HTTP status and the reason.
type admitError struct {
	status int
	limit  string // the limit's metric label
	reason string
}

func (e *admitError) Error() string { return e.reason }

// admit counts a new connection from ip, or refuses it.
func (a *admission) admit(ip netip.Addr) *admitError {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.max > 0 && a.total >= a.max {
		return &admitError{http.StatusServiceUnavailable, "max_conns", fmt.Sprintf("gateway full: %d connections (-max-conns)", a.max)}
	}
	if a.perIP > 0 && a.byIP[ip] >= a.perIP {
		return &admitError{http.StatusTooManyRequests, "max_conns_per_ip", fmt.Sprintf("too many connections from %s: at most %d (-max-conns-per-ip)", ip, a.perIP)}
	}
	a.total++
	if a.byIP == nil {
		a.byIP = make(map[netip.Addr]int)
	}
	a.byIP[ip]++
	return nil
}

// release forgets a connection from ip that admit counted.
func (a *admission) release(ip netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if a.byIP[ip]--; a.byIP[ip] <= 0 {
		delete(a.byIP, ip)
	}
}

// hostPort formats a client address as host:port for events.
func hostPort(a netip.AddrPort, fallback string) string {
	if !a.IsValid() {
		return fallback
	}
	return net.JoinHostPort(a.Addr().String(), fmt.Sprint(a.Port()))
}

// throttle limits the frames one client may send: rate per second with a
// burst. A frame over the limit is refused with an error frame; a client
// that keeps sending over the limit uses up its strikes (refilled at one
// per second) and is closed with 1008.
type throttle struct {
	frames  *rate.Limiter
	strikes *rate.Limiter
}

// newThrottle returns nil (no limit) when perSecond is not positive.
func newThrottle(perSecond float64, burst, strikes int) *throttle {
	if perSecond <= 0 {
		return nil
	}
	return &throttle{frames: rate.NewLimiter(rate.Limit(perSecond), burst), strikes: rate.NewLimiter(1, strikes)}
}

// verdict is what to do with one frame.
type verdict int

const (
	admitFrame verdict = iota
	refuseFrame
	closeAbuser
)

func (t *throttle) check() verdict {
	if t == nil || t.frames.Allow() {
		return admitFrame
	}
	if t.strikes.Allow() {
		return refuseFrame
	}
	return closeAbuser
}
