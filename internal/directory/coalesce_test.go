package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatewire/gatewire/internal/testsvc"
)

func TestCoalesceMemory(t *testing.T) {
	testContract(t, func(t *testing.T) Directory { return Coalesce(NewMemory()) })
}

func TestCoalesceRedis(t *testing.T) {
	client := newRedisClient(t, testsvc.Redis(t))
	testContract(t, func(t *testing.T) Directory { return Coalesce(NewRedis(client, testPrefix(t))) })
}

// gatedDir is a Directory whose ClientIDs calls are recorded and, while
// gate is set, wait for it to be closed.
type gatedDir struct {
	Directory

	mu      sync.Mutex
	gate    chan struct{}
	calls   [][]string
	entered chan struct{} // receives once per call, when it starts waiting
}

func (g *gatedDir) ClientIDs(ctx context.Context, uids ...string) (map[string][]string, error) {
	g.mu.Lock()
	g.calls = append(g.calls, slices.Clone(uids))
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		g.entered <- struct{}{}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.Directory.ClientIDs(ctx, uids...)
}

func (g *gatedDir) callCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.calls)
}

// waitForWaiters waits until n callers wait for the forming lookup of c.
func waitForWaiters(t *testing.T, c *coalescer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := 0
		if c.forming != nil {
			got = c.forming.waiters
		}
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait for the next lookup, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCoalesceSharesOneCall checks that the calls arriving while one is in
// flight go out together as one call of the underlying Directory, and that
// each caller gets exactly the entries of its own uids.
func TestCoalesceSharesOneCall(t *testing.T) {
	mem := NewMemory()
	const n = 20
	for i := range n {
		mustBind(t, mem, cid(gwA, uint64(i+1)), fmt.Sprintf("u%d", i))
	}
	g := &gatedDir{Directory: mem, gate: make(chan struct{}), entered: make(chan struct{}, n+1)}
	d := Coalesce(g)

	first := make(chan error, 1)
	go func() {
		_, err := d.ClientIDs(t.Context(), "u0")
		first <- err
	}()
	<-g.entered // the first call is in flight and holds the directory busy

	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			uids := []string{fmt.Sprintf("u%d", i), "nobody"}
			if i%2 == 0 {
				uids = append(uids, "u1") // shared with another caller
			}
			got, err := d.ClientIDs(t.Context(), uids...)
			if err != nil {
				errs <- err
				return
			}
			want := map[string][]string{fmt.Sprintf("u%d", i): {cid(gwA, uint64(i+1))}}
			if i%2 == 0 {
				want["u1"] = []string{cid(gwA, 2)}
			}
			if !mapsEqual(got, want) {
				errs <- fmt.Errorf("caller %d got %v, want %v", i, got, want)
			}
		}()
	}
	waitForWaiters(t, d.(*coalescer), n-1)
	close(g.gate)
	wg.Wait()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := g.callCount(); got != 2 {
		t.Errorf("underlying ClientIDs calls = %d, want 2 (the first, then all the others together)", got)
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// TestCoalesceCanceledWaiters checks that callers that stop waiting do not
// wedge the directory: whether they leave the forming lookup, or leave
// once it had its turn, later calls are answered.
func TestCoalesceCanceledWaiters(t *testing.T) {
	mem := NewMemory()
	mustBind(t, mem, cid(gwA, 1), "alice")
	g := &gatedDir{Directory: mem, gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	d := Coalesce(g)
	c := d.(*coalescer)

	first := make(chan error, 1)
	go func() {
		_, err := d.ClientIDs(t.Context(), "alice")
		first <- err
	}()
	<-g.entered

	// A waiter that leaves while its lookup forms: the lookup is dropped.
	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan error, 1)
	go func() {
		_, err := d.ClientIDs(ctx, "alice")
		left <- err
	}()
	waitForWaiters(t, c, 1)
	cancel()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter got %v, want context.Canceled", err)
	}
	c.mu.Lock()
	forming := c.forming
	c.mu.Unlock()
	if forming != nil {
		t.Fatal("the abandoned lookup is still forming")
	}

	// A waiter that leaves after its lookup got the turn but before it was
	// sent: the turn passes on.
	l := &lookup{uids: []string{"alice"}, waiters: 1, turn: make(chan struct{}), done: make(chan struct{})}
	c.mu.Lock()
	c.forming = l
	c.mu.Unlock()
	close(g.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	c.leave(l)
	c.mu.Lock()
	busy := c.busy
	c.mu.Unlock()
	if busy {
		t.Fatal("directory still busy after the last waiter of the lookup with the turn left")
	}

	got, err := d.ClientIDs(t.Context(), "alice")
	if err != nil || !mapsEqual(got, map[string][]string{"alice": {cid(gwA, 1)}}) {
		t.Fatalf("ClientIDs after the waiters left = %v, %v", got, err)
	}
}

// TestCoalesceBadUIDFailsAlone checks that an invalid uid fails its own
// call before it joins a shared one.
func TestCoalesceBadUIDFailsAlone(t *testing.T) {
	g := &gatedDir{Directory: NewMemory()}
	d := Coalesce(g)
	if _, err := d.ClientIDs(t.Context(), "alice", ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("ClientIDs with an empty uid = %v, want ErrInvalid", err)
	}
	if got := g.callCount(); got != 0 {
		t.Errorf("underlying ClientIDs calls = %d, want 0", got)
	}
}
