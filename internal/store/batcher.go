package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Batcher coalesces concurrent SaveMessages calls of single messages into
// batches: one writer goroutine takes the first waiting message, adds every
// message that is already waiting (up to MaxBatch) and stores them in one
// SaveMessages call; messages queue during a write and go out together in
// the next. With a linger, while traffic is steady (the previous batch began
// less than one linger before this one), the writer also collects until
// the batch's first message has waited the linger, so that a moderate
// rate, whose commits would each carry a message or two, shares fewer
// commits; a lone message after a quiet spell is written at once. The
// linger counts from the first message's arrival, not from when the writer
// takes it: the next batch forms while the previous one is written, and no
// message waits more than the linger plus one write for its own write to
// begin.
type Batcher struct {
	store  Store
	max    int
	linger time.Duration
	reqs   chan *saveReq

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type saveReq struct {
	ctx     context.Context
	msg     NewMessage
	res     chan saveRes
	arrived time.Time
}

type saveRes struct {
	saved Saved
	err   error
}

// ErrClosed reports a Save after Close.
var ErrClosed = errors.New("store: batcher closed")

// NewBatcher starts a Batcher writing to s in batches of at most maxBatch
// messages (zero means 128), collecting for up to linger under steady
// traffic (zero: never). Close stops it.
func NewBatcher(s Store, maxBatch int, linger time.Duration) *Batcher {
	if maxBatch <= 0 {
		maxBatch = 128
	}
	b := &Batcher{store: s, max: maxBatch, linger: max(linger, 0), reqs: make(chan *saveReq, maxBatch), stop: make(chan struct{}), done: make(chan struct{})}
	go b.run()
	return b
}

// Save stores msg, batched with concurrent calls, and waits for the result.
// An invalid message fails alone, before it joins a batch.
func (b *Batcher) Save(ctx context.Context, msg NewMessage) (Saved, error) {
	if err := checkNewMessage(msg); err != nil {
		return Saved{}, err
	}
	r := &saveReq{ctx: ctx, msg: msg, res: make(chan saveRes, 1), arrived: time.Now()}
	select {
	case <-b.stop:
		return Saved{}, ErrClosed
	default:
	}
	select {
	case b.reqs <- r:
	case <-b.stop:
		return Saved{}, ErrClosed
	case <-ctx.Done():
		return Saved{}, ctx.Err()
	}
	select {
	case res := <-r.res:
		return res.saved, res.err
	case <-b.done:
		// The writer stopped; it may have answered just before.
		select {
		case res := <-r.res:
			return res.saved, res.err
		default:
			return Saved{}, ErrClosed
		}
	case <-ctx.Done():
		// The write may still happen; a retry with the same cmid finds it.
		return Saved{}, ctx.Err()
	}
}

// Close stops the writer after the batch in progress; waiting and later
// Saves fail with ErrClosed. It is idempotent.
func (b *Batcher) Close() {
	b.stopOnce.Do(func() { close(b.stop) })
	<-b.done
}

func (b *Batcher) run() {
	defer close(b.done)
	batch := make([]*saveReq, 0, b.max)
	var linger *time.Timer
	if b.linger > 0 {
		linger = time.NewTimer(b.linger)
		defer linger.Stop()
	}
	var lastStart time.Time // when the previous batch's first message was taken
	for {
		select {
		case <-b.stop:
			b.failWaiting()
			return
		case r := <-b.reqs:
			batch = append(batch[:0], r)
		}
		if linger != nil {
			start := time.Now()
			if start.Sub(lastStart) < b.linger { // steady traffic
				batch = b.collect(batch, linger)
			}
			lastStart = start
		}
	fill:
		for len(batch) < b.max {
			select {
			case r := <-b.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		b.write(batch)
	}
}

// collect adds to batch what arrives until its first message has waited
// the linger, until it is full or the Batcher stops (the stop is then
// handled by run).
func (b *Batcher) collect(batch []*saveReq, linger *time.Timer) []*saveReq {
	wait := time.Until(batch[0].arrived.Add(b.linger))
	if wait <= 0 {
		return batch
	}
	linger.Reset(wait)
	for len(batch) < b.max {
		select {
		case r := <-b.reqs:
			batch = append(batch, r)
		case <-linger.C:
			return batch
		case <-b.stop:
			return batch
		}
	}
	return batch
}

// write stores one batch, skipping requests whose callers already gave up.
func (b *Batcher) write(batch []*saveReq) {
	live := batch[:0]
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live = append(live, r)
		}
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := batchContext(live)
	defer cancel()
	msgs := make([]NewMessage, len(live))
	for i, r := range live {
		msgs[i] = r.msg
	}
	saved, err := b.store.SaveMessages(ctx, msgs)
	if err == nil && len(saved) != len(msgs) {
		err = errors.New("store: SaveMessages returned a result count that differs from the batch")
	}
	for i, r := range live {
		if err != nil {
			r.res <- saveRes{err: err}
		} else {
			r.res <- saveRes{saved: saved[i]}
		}
	}
}

// batchTimeout bounds a batch write whose callers set no deadline.
const batchTimeout = 5 * time.Second

// batchContext returns a context for writing a batch: it lasts until the
// latest deadline among the requests (batchTimeout if one has none), so
// one impatient caller does not fail the others.
func batchContext(reqs []*saveReq) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, r := range reqs {
		d, ok := r.ctx.Deadline()
		if !ok {
			d = time.Now().Add(batchTimeout)
		}
		if d.After(latest) {
			latest = d
		}
	}
	return context.WithDeadline(context.WithoutCancel(reqs[0].ctx), latest)
}

func (b *Batcher) failWaiting() {
	for {
		select {
		case r := <-b.reqs:
			r.res <- saveRes{err: ErrClosed}
		default:
			return
		}
	}
}
