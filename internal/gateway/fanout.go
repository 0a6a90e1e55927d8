package gateway

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// fanOutChunk is how many connections one goroutine of a fan-out writes to
// before it takes the next share; lists up to this long are written by the
// caller alone.
const fanOutChunk = 256

// fanOut writes f to each of conns (nil entries are skipped) and returns
// how many took it. Every write is a system call in the sending goroutine
// (see outbox), so a long list is split among up to GOMAXPROCS goroutines
// to use every core. fanOut returns once every write is done: the commands
// of a link still reach each connection in order.
func fanOut(conns []*conn, f frame) int {
	parts := min(runtime.GOMAXPROCS(0), (len(conns)+fanOutChunk-1)/fanOutChunk)
	if parts <= 1 {
		return sendEach(conns, f)
	}
	var next, sent atomic.Int64
	var wg sync.WaitGroup
	for range parts {
		wg.Go(func() {
			for {
				end := int(next.Add(fanOutChunk))
				start := end - fanOutChunk
				if start >= len(conns) {
					return
				}
				sent.Add(int64(sendEach(conns[start:min(end, len(conns))], f)))
			}
		})
	}
	wg.Wait()
	return int(sent.Load())
}

// sendEach writes f to each of conns in turn and returns how many took it.
func sendEach(conns []*conn, f frame) int {
	n := 0
	for _, c := range conns {
		if c != nil && c.enqueue(f) {
			n++
		}
	}
	return n
}
