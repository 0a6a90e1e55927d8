package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// countingStore counts SaveMessages calls and their sizes.
type countingStore struct {
	Store
	mu      sync.Mutex
	batches []int
}

func (c *countingStore) SaveMessages(ctx context.Context, msgs []NewMessage) ([]Saved, error) {
	c.mu.Lock()
	c.batches = append(c.batches, len(msgs))
	c.mu.Unlock()
	return c.Store.SaveMessages(ctx, msgs)
}

func TestBatcher(t *testing.T) {
	st, err := OpenSQLite(t.Context(), filepath.Join(t.TempDir(), "b.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs := &countingStore{Store: st}
	b := NewBatcher(cs, 16, 0)
	defer b.Close()

	t.Run("LoneMessage", func(t *testing.T) {
		s, err := b.Save(t.Context(), NewMessage{From: "1", To: "2", Text: "hi", Kind: KindText})
		if err != nil || s.Message.ID == 0 || s.Message.Text != "hi" {
			t.Fatalf("Save = %+v, %v", s, err)
		}
	})
	t.Run("ConcurrentMessagesShareBatches", func(t *testing.T) {
		cs.mu.Lock()
		cs.batches = nil
		cs.mu.Unlock()
		const n = 200
		var wg sync.WaitGroup
		ids := make([]int64, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := b.Save(t.Context(), NewMessage{From: "a", To: "b", Text: fmt.Sprint(i), Kind: KindText, CMID: fmt.Sprint("c", i)})
				if err != nil || s.Message.Text != fmt.Sprint(i) {
					t.Errorf("Save %d = %+v, %v", i, s, err)
				}
				ids[i] = s.Message.ID
			}()
		}
		wg.Wait()
		seen := map[int64]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("id %d returned twice", id)
			}
			seen[id] = true
		}
		cs.mu.Lock()
		defer cs.mu.Unlock()
		total := 0
		for _, n := range cs.batches {
			if n > 16 {
				t.Errorf("a batch of %d exceeds the maximum 16", n)
			}
			total += n
		}
		if total != n || len(cs.batches) >= n {
			t.Errorf("%d messages in %d batches %v: want every message once, in fewer batches than messages", total, len(cs.batches), cs.batches)
		}
	})
	t.Run("InvalidMessageFailsAlone", func(t *testing.T) {
		if _, err := b.Save(t.Context(), NewMessage{From: "", To: "b", Text: "x", Kind: KindText}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Save of an invalid message: %v, want ErrInvalid", err)
		}
	})
	t.Run("AfterClose", func(t *testing.T) {
		b2 := NewBatcher(cs, 0, 0)
		b2.Close()
		b2.Close() // idempotent
		if _, err := b2.Save(t.Context(), NewMessage{From: "1", To: "2", Text: "x", Kind: KindText}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Save after Close: %v, want ErrClosed", err)
		}
	})
}

// TestBatcherLinger: under steady traffic the writer collects for the
// linger, so messages sent one after another, each waiting for the
// previous one's start, share a batch; a message after a quiet spell is
// written without waiting out the linger.
func TestBatcherLinger(t *testing.T) {
	st := openSQLiteT(t, filepath.Join(t.TempDir(), "l.db"))
	cs := &countingStore{Store: st}
	const linger = 2 * time.Second
	b := NewBatcher(cs, 0, linger)
	defer b.Close()
	save := func(text string) {
		t.Helper()
		if _, err := b.Save(t.Context(), NewMessage{From: "a", To: "b", Text: text, Kind: KindText}); err != nil {
			t.Fatal(err)
		}
	}
	// Quiet: the first message is written at once, long before the linger.
	start := time.Now()
	save("lone")
	if d := time.Since(start); d >= linger {
		t.Fatalf("a lone message took %v: it waited out the linger", d)
	}
	// Steady now (the previous batch began within the linger): the next
	// batch collects; messages arriving meanwhile join it.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); save("steady-1") }()
	time.Sleep(200 * time.Millisecond)
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); save(fmt.Sprint("steady-", i+2)) }()
	}
	wg.Wait()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if want := []int{1, 4}; !slices.Equal(cs.batches, want) {
		t.Errorf("batches %v, want %v", cs.batches, want)
	}
}

// gatedStore holds the write of a batch whose first message is gated
// until release is closed, after telling writing that it began.
type gatedStore struct {
	Store
	gated   string
	writing chan struct{}
	release chan struct{}
}

func (g *gatedStore) SaveMessages(ctx context.Context, msgs []NewMessage) ([]Saved, error) {
	if msgs[0].Text == g.gated {
		close(g.writing)
		<-g.release
	}
	return g.Store.SaveMessages(ctx, msgs)
}

// TestBatcherLingerFromArrival: a message that arrives while the previous
// batch is written waits the linger from its arrival, not from when the
// writer gets to it, so the next batch forms during the write.
func TestBatcherLingerFromArrival(t *testing.T) {
	st := openSQLiteT(t, filepath.Join(t.TempDir(), "a.db"))
	gs := &gatedStore{Store: st, gated: "lone", writing: make(chan struct{}), release: make(chan struct{})}
	const linger = 2 * time.Second
	b := NewBatcher(gs, 0, linger)
	defer b.Close()
	save := func(text string) error {
		_, err := b.Save(t.Context(), NewMessage{From: "a", To: "b", Text: text, Kind: KindText})
		return err
	}
	lone := make(chan error, 1)
	go func() { lone <- save("lone") }() // quiet: written at once, held
	<-gs.writing
	start := time.Now()
	next := make(chan error, 1)
	go func() { next <- save("next") }() // arrives during the write
	time.Sleep(linger / 2)
	close(gs.release)
	if err := <-lone; err != nil {
		t.Fatal(err)
	}
	// Taken half a linger after it arrived, within a linger of the previous
	// batch (steady): it waits out the rest of its linger, not a whole one.
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= linger+linger/4 {
		t.Errorf("a message that arrived during a write was written %v after it arrived: want its linger (%v) counted from its arrival", d, linger)
	}
}

// TestMarker: marks are written in batches, pending until written, and
// Close writes what is queued.
func TestMarker(t *testing.T) {
	db := openSQLiteT(t, filepath.Join(t.TempDir(), "m.db"))
	saved, err := db.SaveMessages(t.Context(), []NewMessage{{From: "a", To: "b", Text: "1", Kind: KindText}, {From: "a", To: "b", Text: "2", Kind: KindText}})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMarker(db, nil)
	for _, s := range saved {
		m.Mark(s.Message.ID)
	}
	m.Close()
	m.Close() // idempotent
	for _, s := range saved {
		if m.Pending(s.Message.ID) {
			t.Errorf("message %d still pending after Close", s.Message.ID)
		}
		if ok, err := db.ClaimDelivery(t.Context(), s.Message.ID, 0); err != nil || ok {
			t.Errorf("ClaimDelivery of marked message %d = %v, %v; want false", s.Message.ID, ok, err)
		}
	}
}
