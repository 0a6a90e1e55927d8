package store

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// markTimeout bounds one MarkDelivered call of a Marker.
const markTimeout = 5 * time.Second

// maxMarks caps the ids of one MarkDelivered call.
const maxMarks = 512

// markLinger is how long a Marker collects ids after the first before it
// writes them. Nobody waits for a mark (Pending covers it meanwhile), so
// waiting costs no latency and makes a write carry more ids: one statement
// and commit per ~50 ms of deliveries, not per few messages. A commit
// costs PostgreSQL several times a row (scripts/pgcost.sh); at 2,200 say/s
// over two workers, 50 ms made 38 mark commits a second of what were 139
// at 10 ms. It must stay far below chat's RetrySettle (2 s), which assumes
// a delivery is recorded by then.
const markLinger = 50 * time.Millisecond

// Marker records deliveries in the background: Mark queues a message id and
// returns, and one goroutine writes whatever is queued with one
// MarkDelivered call, so a busy chat costs one round trip per batch, not
// per message; it collects for up to 50ms after the first id of a batch. A
// mark lost to a crash only lets a later retry of that message deliver it
// again (with the same msg_id).
type Marker struct {
	store Store
	log   *slog.Logger
	ids   chan int64

	mu      sync.Mutex
	pending map[int64]struct{} // marked, not yet written

	closeOnce sync.Once
	done      chan struct{}
}

// NewMarker starts a Marker writing to s; failures are logged to log (nil
// discards them). Close stops it.
func NewMarker(s Store, log *slog.Logger) *Marker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Marker{store: s, log: log, ids: make(chan int64, 4*maxMarks), pending: make(map[int64]struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

// Mark queues message id as delivered; it waits only while the queue is
// full.
func (m *Marker) Mark(id int64) {
	m.mu.Lock()
	m.pending[id] = struct{}{}
	m.mu.Unlock()
	m.ids <- id
}

// Pending reports whether id was marked and is not written yet: a retry
// of it must count it delivered, as the store soon will.
func (m *Marker) Pending(id int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.pending[id]
	return ok
}

// Close writes what is queued and stops the Marker. Call it once no Mark
// runs any more; it is idempotent.
func (m *Marker) Close() {
	m.closeOnce.Do(func() {
		close(m.ids)
		<-m.done
	})
}

func (m *Marker) run() {
	defer close(m.done)
	batch := make([]int64, 0, maxMarks)
	linger := time.NewTimer(markLinger)
	defer linger.Stop()
	for id := range m.ids {
		batch = append(batch[:0], id)
		linger.Reset(markLinger)
	more:
		for len(batch) < maxMarks {
			select {
			case id, ok := <-m.ids:
				if !ok {
					break more
				}
				batch = append(batch, id)
			case <-linger.C:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), markTimeout)
		if err := m.store.MarkDelivered(ctx, batch); err != nil {
			m.log.Warn("record deliveries", "messages", len(batch), "err", err)
		}
		cancel()
		m.mu.Lock()
		for _, id := range batch {
			delete(m.pending, id)
		}
		m.mu.Unlock()
	}
}
