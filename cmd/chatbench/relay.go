package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// relayChildScenario is the hidden scenario of the relay scenario's
// forwarding processes.
const relayChildScenario = "relay-child"

// relayConfig holds the relay scenario's flags (the child's too).
type relayConfig struct {
	hops       int
	rate       float64
	duration   time.Duration
	warmup     time.Duration
	drain      time.Duration
	msgBytes   int
	gomaxprocs string
	godebug    string
	next       string // the child's: where it forwards to
}

func relayFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c relayConfig
	fs.IntVar(&c.hops, "hops", 4, "forwarding processes in the chain (a say crosses about this many gatewire processes)")
	fs.Float64Var(&c.rate, "rate", 2200, "messages per second, on a schedule (open loop)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "the measured window")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "messages before the window, not counted")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "how long to wait for the window's last messages")
	fs.IntVar(&c.msgBytes, "message-bytes", 200, "bytes per message (a chat text frame is ~200)")
	fs.StringVar(&c.gomaxprocs, "relay-gomaxprocs", "1", `GOMAXPROCS of each forwarding process, as scripts/bench.sh gives the servers ("default": Go's)`)
	fs.StringVar(&c.godebug, "relay-godebug", "schedtrace=2147483647", `GODEBUG of each forwarding process, as deploy/README.md advises the servers ("none": unset)`)
	return func(o *common) (any, error) { return runRelay(o, c) }
}

func relayChildFlags(fs *flag.FlagSet) func(*common) (any, error) {
	var c relayConfig
	fs.StringVar(&c.next, "next", "", "address to forward to")
	return func(*common) (any, error) { return nil, runRelayChild(c) }
}

// relayResult is the relay scenario's output line: what passing messages
// through Go processes costs on this machine at a given rate, with no
// gatewire code. The benchmark sends -rate messages a second over
// loopback TCP into a chain of -hops processes, each of which reads what
// its socket holds and writes it on to the next (one goroutine, Go's
// net package: a read, a write, and the netpoller's wait between); the
// last writes back to the benchmark. A say crosses about as many
// processes (gateway, worker, PostgreSQL, worker, gateway), each woken
// for it at moderate rates, so the figures say how much of a say's CPU
// the crossings alone take, and how that cost moves with the rate each
// process sees.
type relayResult struct {
	header
	Hops     int     `json:"hops"`
	Rate     float64 `json:"rate"`
	Bytes    int     `json:"message_bytes"`
	GoMaxP   string  `json:"relay_gomaxprocs"`
	GoDebug  string  `json:"relay_godebug"`
	Sent     int64   `json:"sent"`
	Received int64   `json:"received"`
	Lost     int64   `json:"lost"`
	// Latency is per message of the window, from its scheduled send to
	// its return through every hop.
	Latency latSummary `json:"latency"`
	// CPU is the forwarding processes' CPU over the window; unit:
	// message. PerHopUS is their mean per process and message, in µs.
	CPU      *cpuReport `json:"cpu,omitempty"`
	PerHopUS float64    `json:"cpu_us_per_message_per_hop"`
}

func runRelay(o *common, cfg relayConfig) (any, error) {
	switch {
	case cfg.hops < 1:
		return nil, errors.New("-hops must be at least 1")
	case cfg.rate <= 0 || cfg.duration <= 0 || cfg.warmup < 0 || cfg.drain < 0:
		return nil, errors.New("-rate and -duration must be positive, -warmup and -drain not negative")
	case cfg.msgBytes < 8:
		return nil, errors.New("-message-bytes must be at least 8 (the sequence number)")
	}
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	// Start the chain from its end: each process dials the next.
	next := sink.Addr().String()
	var relays []*relayChild
	defer func() {
		for _, r := range relays {
			r.stop()
		}
	}()
	var watched []namedPID
	for i := cfg.hops; i >= 1; i-- {
		r, err := startRelayChild(next, cfg)
		if err != nil {
			return nil, fmt.Errorf("relay %d: %w", i, err)
		}
		relays = append(relays, r)
		watched = append([]namedPID{{name: "relay" + strconv.Itoa(i), pid: r.cmd.Process.Pid}}, watched...)
		if next, err = r.addr(o.setupTimeout); err != nil {
			return nil, fmt.Errorf("relay %d: %w", i, err)
		}
	}
	in, err := net.Dial("tcp", next)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	out, err := sink.Accept()
	if err != nil {
		return nil, err
	}
	defer out.Close()

	period := time.Duration(float64(time.Second) / cfg.rate)
	total := int64((cfg.warmup + cfg.duration) / period)
	first := int64(cfg.warmup / period) // the window's first message
	t0 := time.Now().Add(50 * time.Millisecond)
	due := func(i int64) time.Time { return t0.Add(time.Duration(i) * period) }

	lat := make([]int64, 0, total-first)
	var received int64
	readDone := make(chan error, 1)
	go func() {
		br := bufio.NewReaderSize(out, 64<<10)
		msg := make([]byte, cfg.msgBytes)
		for received < total {
			if _, err := io.ReadFull(br, msg); err != nil {
				readDone <- err
				return
			}
			now := time.Now()
			i := int64(binary.LittleEndian.Uint64(msg))
			if i >= first && i < total {
				lat = append(lat, now.Sub(due(i)).Nanoseconds())
			}
			received++
		}
		readDone <- nil
	}()

	// The window counts the relays' CPU; the benchmark's own, which its
	// process tree would mix with theirs, is its getrusage.
	w := newCPUWindow(watched, nil, nil)
	var selfCPU time.Duration
	msg := make([]byte, cfg.msgBytes)
	for i := range total {
		if i == first {
			if err := w.start(); err != nil {
				return nil, err
			}
			selfCPU = processCPU()
		}
		if d := time.Until(due(i)); d > 0 {
			time.Sleep(d)
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if _, err := in.Write(msg); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
	}
	if err := w.stop(time.Since(due(first)).Seconds()); err != nil {
		return nil, err
	}
	selfCPU = processCPU() - selfCPU
	select {
	case err := <-readDone:
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
	case <-time.After(cfg.drain):
		_ = out.Close() // ends the reader
		<-readDone
	}
	units := total - first
	res := relayResult{
		header:   o.header(),
		Hops:     cfg.hops,
		Rate:     cfg.rate,
		Bytes:    cfg.msgBytes,
		GoMaxP:   cfg.gomaxprocs,
		GoDebug:  cfg.godebug,
		Sent:     total,
		Received: received,
		Lost:     total - received,
		Latency:  summarize(lat),
		CPU:      w.report("message", units),
	}
	if res.CPU != nil {
		res.CPU.ClientS = round3(selfCPU.Seconds())
		res.CPU.OtherS = round3(res.CPU.HostBusyS - res.CPU.Seconds["total"] - res.CPU.ClientS)
		res.PerHopUS = round3(res.CPU.Seconds["total"] * 1e6 / float64(units) / float64(cfg.hops))
	}
	return res, nil
}

// relayChild is one forwarding process.
type relayChild struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	once  sync.Once
}

func startRelayChild(next string, cfg relayConfig) (*relayChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, relayChildScenario, "-next", next, "-quiet")
	cmd.Env = os.Environ()
	if cfg.gomaxprocs != "default" {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+cfg.gomaxprocs)
	}
	if cfg.godebug != "none" {
		cmd.Env = append(cmd.Env, "GODEBUG="+cfg.godebug)
	}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &relayChild{cmd: cmd, stdin: stdin, lines: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
	}()
	return r, nil
}

// addr waits for the child's "listening ADDR" line.
func (r *relayChild) addr(timeout time.Duration) (string, error) {
	select {
	case line, ok := <-r.lines:
		if a, found := strings.CutPrefix(line, "listening "); ok && found {
			return a, nil
		}
		return "", fmt.Errorf("pid %d said %q, want listening ADDR", r.cmd.Process.Pid, line)
	case <-time.After(timeout):
		return "", fmt.Errorf("pid %d: no address within %v", r.cmd.Process.Pid, timeout)
	}
}

// stop closes the child's stdin, which makes it exit, and waits; a child
// still there after 10s is killed.
func (r *relayChild) stop() {
	r.once.Do(func() {
		_ = r.stdin.Close()
		t := time.AfterFunc(10*time.Second, func() { _ = r.cmd.Process.Kill() })
		for range r.lines { // drain, so that Wait may close the pipe
		}
		_ = r.cmd.Wait()
		t.Stop()
	})
}

// runRelayChild dials -next, listens, says "listening ADDR", accepts one
// connection and forwards what it reads to -next until its stdin closes.
func runRelayChild(cfg relayConfig) error {
	out, err := net.Dial("tcp", cfg.next)
	if err != nil {
		return err
	}
	defer out.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	if _, err := fmt.Println("listening", ln.Addr()); err != nil {
		return err
	}
	in, err := ln.Accept()
	if err != nil {
		return err
	}
	defer in.Close()
	failed := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					failed <- werr
					return
				}
			}
			if err != nil {
				failed <- err
				return
			}
		}
	}()
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
		return nil
	case err := <-failed:
		if errors.Is(err, io.EOF) {
			return nil // the benchmark is done
		}
		return err
	}
}
