package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// floorChildScenario is the hidden scenario of the floor scenario's
// reading process.
const floorChildScenario = "floor-child"

// floorConfig holds the floor scenario's flags (the child's too).
type floorConfig struct {
	members      int
	rounds       int
	warmupRounds int
	writers      int
	readers      int
	frameBytes   int
	roundTimeout time.Duration
	addr         string // the child's: where the parent listens
}

func floorFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c floorConfig
	fs.IntVar(&c.members, "members", 10000, "loopback TCP connections, each written once a round")
	fs.IntVar(&c.rounds, "rounds", 20, "measured rounds; each waits until every connection's frame is read")
	fs.IntVar(&c.warmupRounds, "warmup-rounds", 2, "rounds before the measured ones, not counted")
	fs.IntVar(&c.writers, "writers", 2, "threads that write a round between them, as the fanout scenario's two gateways do")
	fs.IntVar(&c.readers, "readers", runtime.NumCPU(), "threads of the reading process that wait in epoll and read")
	fs.IntVar(&c.frameBytes, "frame-bytes", 64, "bytes written to each connection a round (a fanout frame is ~50)")
	fs.DurationVar(&c.roundTimeout, "round-timeout", 10*time.Second, "how long a round may take")
	return func(o *common) (any, error) { return runFloor(o, c) }
}

func floorChildFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c floorConfig
	fs.StringVar(&c.addr, "addr", "", "the parent's listening address")
	fs.IntVar(&c.members, "members", 0, "connections to open")
	fs.IntVar(&c.readers, "readers", 1, "reading threads")
	fs.IntVar(&c.frameBytes, "frame-bytes", 0, "bytes per connection per round")
	return func(*common) (any, error) { return nil, runFloorChild(c) }
}

// floorResult is the floor scenario's output line: what this machine's
// kernel alone costs for a fan-out over loopback TCP. One process writes
// a small frame to each of -members sockets with raw write(2) calls (what
// a gateway's wire does for each member, minus the websocket framing and
// everything else); a second process reads them with epoll and raw
// read(2) calls (a client as lean as can be). Nothing of gatewire runs, so
// the fanout scenario's figures on the same machine can be set against it.
type floorResult struct {
	header
	Members    int `json:"members"`
	Rounds     int `json:"rounds"`
	Writers    int `json:"writers"`
	Readers    int `json:"readers"`
	FrameBytes int `json:"frame_bytes"`
	// Latency is per round, from the first write to the reading process
	// having read every frame (its report crosses a pipe); Write is the
	// writers' part of it.
	Latency latSummary `json:"latency"`
	Write   latSummary `json:"write"`
	// Per frame, over the measured rounds: the writing and the reading
	// process's CPU (user and system, as getrusage counts it).
	WriterCPUUS float64 `json:"writer_cpu_us_per_frame"`
	ReaderCPUUS float64 `json:"reader_cpu_us_per_frame"`
}

func runFloor(o *common, cfg floorConfig) (any, error) {
	switch {
	case cfg.members < 1 || cfg.rounds < 1 || cfg.warmupRounds < 0:
		return nil, errors.New("-members and -rounds must be at least 1, -warmup-rounds at least 0")
	case cfg.writers < 1 || cfg.readers < 1:
		return nil, errors.New("-writers and -readers must be at least 1")
	case cfg.frameBytes < 1:
		return nil, errors.New("-frame-bytes must be at least 1")
	case uint64(cfg.members)+64 > o.fdLimit:
		return nil, fmt.Errorf("-members %d needs more open files than the limit, %d", cfg.members, o.fdLimit)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	accepted := make(chan acceptResult, 1)
	go func() { accepted <- acceptN(ln, cfg.members) }()
	child, err := startHelper(nil, floorChildScenario, "-addr", ln.Addr().String(),
		"-members", strconv.Itoa(cfg.members), "-readers", strconv.Itoa(cfg.readers),
		"-frame-bytes", strconv.Itoa(cfg.frameBytes), "-quiet")
	if err != nil {
		return nil, err
	}
	defer child.stop()
	// Accept ends early if the reader exits, or setup takes too long.
	acceptDone := make(chan struct{})
	go func() {
		select {
		case <-child.exited:
		case <-time.After(o.setupTimeout):
		case <-acceptDone:
			return
		}
		_ = ln.Close()
	}()
	acc := <-accepted
	close(acceptDone)
	defer func() {
		child.stop() // first, or it reads the closes as a failure
		for _, c := range acc.conns {
			_ = c.Close()
		}
	}()
	if acc.err != nil {
		return nil, fmt.Errorf("accept %d connections (the reader exited, or -setup-timeout passed): %w", cfg.members, acc.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
	_, err = child.expect(ctx, "ready")
	cancel()
	if err != nil {
		return nil, err
	}
	if !o.quiet {
		logf("floor: %d connections open", cfg.members)
	}
	frame := make([]byte, cfg.frameBytes)
	var lat, write []int64
	var writerCPU, readerCPU time.Duration
	for r := 0; r < cfg.warmupRounds+cfg.rounds; r++ {
		time.Sleep(100 * time.Millisecond) // the reader settles into epoll_wait
		cpu0 := processCPU()
		start := time.Now()
		if err := writeRound(acc.fds, frame, cfg.writers); err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		wrote := time.Since(start)
		cpu1 := processCPU()
		line, err := child.nextWithin(cfg.roundTimeout)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		took := time.Since(start)
		childCPU, err := parseDone(line)
		if err != nil {
			return nil, err
		}
		if r < cfg.warmupRounds {
			continue
		}
		lat = append(lat, took.Nanoseconds())
		write = append(write, wrote.Nanoseconds())
		writerCPU += cpu1 - cpu0
		readerCPU += childCPU
	}
	frames := float64(cfg.members * cfg.rounds)
	return floorResult{
		header:      o.header(),
		Members:     cfg.members,
		Rounds:      cfg.rounds,
		Writers:     cfg.writers,
		Readers:     cfg.readers,
		FrameBytes:  cfg.frameBytes,
		Latency:     summarize(lat),
		Write:       summarize(write),
		WriterCPUUS: round3(float64(writerCPU.Nanoseconds()) / 1e3 / frames),
		ReaderCPUUS: round3(float64(readerCPU.Nanoseconds()) / 1e3 / frames),
	}, nil
}

// acceptResult is the accepted connections and their descriptors.
type acceptResult struct {
	conns []net.Conn
	fds   []int
	err   error
}

func acceptN(ln net.Listener, n int) acceptResult {
	var a acceptResult
	for len(a.conns) < n {
		c, err := ln.Accept()
		if err != nil {
			a.err = err
			return a
		}
		a.conns = append(a.conns, c)
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err == nil {
			err = rc.Control(func(fd uintptr) { a.fds = append(a.fds, int(fd)) })
		}
		if err != nil {
			a.err = err
			return a
		}
	}
	return a
}

// writeRound writes frame once to every fd, the fds shared among writers
// threads. A write is a raw system call on the non-blocking socket, as a
// gateway's wire makes it; a frame the socket does not take whole fails
// the round (the reader keeps up at one frame a round).
func writeRound(fds []int, frame []byte, writers int) error {
	per := (len(fds) + writers - 1) / writers
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		lo, hi := min(w*per, len(fds)), min((w+1)*per, len(fds))
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			p := unsafe.Pointer(unsafe.SliceData(frame))
			for _, fd := range fds[lo:hi] {
				n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(p), uintptr(len(frame)))
				if errno != 0 {
					errs[w] = fmt.Errorf("write fd %d: %w", fd, errno)
					return
				}
				if int(n) != len(frame) {
					errs[w] = fmt.Errorf("write fd %d: %d of %d bytes", fd, n, len(frame))
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// processCPU is the process's user and system time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parseDone reads the child's "done CPU_NS" line: the CPU it spent on the
// round.
func parseDone(line string) (time.Duration, error) {
	v, ok := strings.CutPrefix(line, "done ")
	if !ok {
		return 0, fmt.Errorf("reader said %q, want done", line)
	}
	ns, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reader said %q: %w", line, err)
	}
	return time.Duration(ns), nil
}
