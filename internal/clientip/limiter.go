package clientip

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter allows each client address a rate of events with a burst (a
// token bucket per address). It forgets addresses whose bucket has been
// full for a while, so its memory follows the addresses seen recently. The
// zero Limiter is not usable; a nil *Limiter allows everything. It is safe
// for concurrent use.
type Limiter struct {
	every rate.Limit
	burst int
	idle  time.Duration // a full bucket is forgotten after this long

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// NewLimiter returns a Limiter allowing perMinute events a minute per
// address, with burst at once; nil (no limit) when perMinute is not
// positive.
func NewLimiter(perMinute float64, burst int) *Limiter {
	if perMinute <= 0 {
		return nil
	}
	every := rate.Limit(perMinute / 60)
	return &Limiter{
		every:   every,
		burst:   max(burst, 1),
		idle:    time.Duration(float64(max(burst, 1)) / float64(every) * float64(time.Second)),
		buckets: make(map[netip.Addr]*bucket),
	}
}

// Allow reports whether ip may do one more event now.
func (l *Limiter) Allow(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > l.idle {
		for a, b := range l.buckets {
			if now.Sub(b.last) > l.idle { // refilled: forgetting it changes nothing
				delete(l.buckets, a)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[ip] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}
