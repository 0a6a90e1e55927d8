package register

import (
	"context"
	"sort"
	"sync"
	"time"

	registerv1 "github.com/gatewire/gatewire/proto/gatewire/register/v1"
)

// Lease is a gateway's entry in a Table.
type Lease struct {
	Gateway *registerv1.Gateway
	// Expires is when the lease lapses unless renewed.
	Expires time.Time
}

// Table stores leases. Implementations are safe for concurrent use by
// several register replicas.
type Table interface {
	// Renew creates or extends gw's lease until expires and reports whether
	// the lease is new (no live entry existed).
	Renew(ctx context.Context, gw *registerv1.Gateway, expires time.Time) (fresh bool, err error)
	// Remove deletes a lease and reports whether this call removed it (false
	// when it was already gone), so exactly one replica acts on a removal.
	Remove(ctx context.Context, id string) (bool, error)
	// Expire removes a lease only if it lapsed before now, and reports
	// whether this call removed it.
	Expire(ctx context.Context, id string, now time.Time) (bool, error)
	// List returns every lease, lapsed ones included, sorted by gateway id.
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
	_, existed := t.leases[gw.GetId()]
	t.leases[gw.GetId()] = Lease{Gateway: gw, Expires: expires}
	return !existed, nil
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
func (t *MemoryTable) Expire(_ context.Context, id string, now time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.leases[id]
	if !ok || !l.Expires.Before(now) {
		return false, nil
	}
	delete(t.leases, id)
	return true, nil
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
