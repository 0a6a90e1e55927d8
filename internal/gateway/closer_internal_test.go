package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCloser: do never waits; at most closeConcurrency jobs run at once,
// they start in the order they came, and every one runs.
func TestCloser(t *testing.T) {
	var q closer
	const jobs = 10 * closeConcurrency
	release := make(chan struct{})
	var running, most atomic.Int64
	var mu sync.Mutex
	var order []int
	var done sync.WaitGroup
	done.Add(jobs)
	for i := range jobs {
		q.do(func() { // returns at once although the jobs block
			defer done.Done()
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			running.Add(-1)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() < closeConcurrency && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	done.Wait()
	if m := most.Load(); m != closeConcurrency {
		t.Errorf("%d jobs ran at once at most; want %d", m, closeConcurrency)
	}
	// Each of the closeConcurrency drainers takes the next job in turn, so
	// a job starts no earlier than closeConcurrency-1 places before its
	// turn.
	for pos, i := range order {
		if i > pos+closeConcurrency-1 {
			t.Fatalf("job %d started %dth; the order is %v", i, pos, order)
		}
	}
	if len(order) != jobs {
		t.Errorf("%d jobs ran; want %d", len(order), jobs)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.running > 0 && time.Now().Before(deadline) { // the drainers are leaving
		q.mu.Unlock()
		time.Sleep(time.Millisecond)
		q.mu.Lock()
	}
	if q.running != 0 || len(q.queue) != 0 {
		t.Errorf("after every job: %d drainers, %d queued; want none", q.running, len(q.queue))
	}
}
