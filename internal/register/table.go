package register

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// Lease is a gateway's entry in a Table.
type Lease struct {
	Gateway *registerv1.Gateway
	// Expires is when the lease lapses unless renewed (for a tombstone:
	// when the purge is presumed abandoned).
	Expires time.Time
	// Purging marks a tombstone: the lease lapsed and a register is purging
	// the gateway's directory entries. A tombstone is never live.
	Purging bool
}

// ErrPurging is returned by Renew while the gateway's lapsed lease is being
// purged: the gateway must retry once the purge is over, so that the
// bindings it re-publishes are not purged with the old ones.
var ErrPurging = errors.New("register: the gateway's lapsed lease is being purged; retry")

// Table stores leases. Implementations are safe for concurrent use by
// several register replicas.
type Table interface {
	// Renew creates or extends gw's lease until expires and reports whether
	// the lease is fresh: no live lease existed (first announce, lapsed, or
	// lost). It fails with ErrPurging while a tombstone is in force.
	Renew(ctx context.Context, gw *registerv1.Gateway, expires time.Time) (fresh bool, err error)
	// Remove deletes a lease and reports whether this call removed it (false
	// when it was already gone), so exactly one replica acts on a removal.
	Remove(ctx context.Context, id string) (bool, error)
	// Expire turns a lease (or tombstone) that lapsed before now into a
	// tombstone in force until purgeUntil, and reports whether this call did
	// it: exactly one replica then purges the gateway's entries.
	Expire(ctx context.Context, id string, now, purgeUntil time.Time) (bool, error)
	// Forget deletes a tombstone once its purge is done.
	Forget(ctx context.Context, id string) error
	// List returns every lease and tombstone, lapsed ones included, sorted by
	// gateway id.
	List(ctx context.Context) ([]Lease, error)
}

// MemoryTable is a Table in process memory, for a single register.
type MemoryTable struct {
	mu     sync.Mutex
	leases map[string]Lease
}

// NewMemoryTable returns an empty MemoryTable.
func NewMemoryTable() *MemoryTable {
	return &MemoryTable{leases: make(map[string]Lease)}
}

// Renew implements Table.
func (t *MemoryTable) Renew(_ context.Context, gw *registerv1.Gateway, expires time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	old, existed := t.leases[gw.GetId()]
	if existed && old.Purging && !old.Expires.Before(now) {
		return false, ErrPurging
	}
	t.leases[gw.GetId()] = Lease{Gateway: gw, Expires: expires}
	return !existed || old.Purging || old.Expires.Before(now), nil
}

// Remove implements Table.
func (t *MemoryTable) Remove(_ context.Context, id string) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.leases[id]
	delete(t.leases, id)
	return ok, nil
}

// Expire implements Table.
func (t *MemoryTable) Expire(_ context.Context, id string, now, purgeUntil time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[id]
	if !ok || !l.Expires.Before(now) {
		return false, nil
	}
	t.leases[id] = Lease{Gateway: l.Gateway, Expires: purgeUntil, Purging: true}
	return true, nil
}

// Forget implements Table.
func (t *MemoryTable) Forget(_ context.Context, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l, ok := t.leases[id]; ok && l.Purging {
		delete(t.leases, id)
	}
	return nil
}

// List implements Table.
func (t *MemoryTable) List(context.Context) ([]Lease, error) {
	t.mu.Lock()
	out := make([]Lease, 0, len(t.leases))
	for _, l := range t.leases {
		out = append(out, l)
	}
	t.mu.Unlock()
	sortLeases(out)
	return out, nil
}

func sortLeases(ls []Lease) {
	sort.Slice(ls, func(i, j int) bool { return ls[i].Gateway.GetId() < ls[j].Gateway.GetId() })
}
