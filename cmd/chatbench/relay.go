package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// relayChildScenario is the hidden scenario of the relay scenario's
// forwarding processes.
const relayChildScenario = "relay-child"

// relayConfig holds the relay scenario's flags (the child's too).
type relayConfig struct {
	hops       int
	chains     int
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
	fs.IntVar(&c.chains, "chains", 1, "chains side by side, the messages dealt among them in turn (4 chains of 1 hop: four gateways sharing the rate one would see)")
	fs.Float64Var(&c.rate, "rate", 2200, "messages per second in all, on a schedule (open loop)")
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
// process sees. With -chains C, C chains run side by side and the
// messages are dealt among them: the same traffic spread over more
// processes, as over more gateways.
type relayResult struct {
	header
	Hops     int     `json:"hops"`
	Chains   int     `json:"chains"`
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
	// message. PerHopUS is it per message and process crossed, in µs.
	CPU      *cpuReport `json:"cpu,omitempty"`
	PerHopUS float64    `json:"cpu_us_per_message_per_hop"`
}

func runRelay(o *common, cfg relayConfig) (any, error) {
	switch {
	case cfg.hops < 1 || cfg.chains < 1:
		return nil, errors.New("-hops and -chains must be at least 1")
	case cfg.rate <= 0 || cfg.duration <= 0 || cfg.warmup < 0 || cfg.drain < 0:
		return nil, errors.New("-rate and -duration must be positive, -warmup and -drain not negative")
	case cfg.msgBytes < 8:
		return nil, errors.New("-message-bytes must be at least 8 (the sequence number)")
	}
	ch, err := startRelayChains(o, cfg)
	defer ch.close()
	if err != nil {
		return nil, err
	}
	ins, outs, watched := ch.ins, ch.outs, ch.watched

	period := time.Duration(float64(time.Second) / cfg.rate)
	total := int64((cfg.warmup + cfg.duration) / period)
	first := int64(cfg.warmup / period) // the window's first message
	t0 := time.Now().Add(50 * time.Millisecond)
	due := func(i int64) time.Time { return t0.Add(time.Duration(i) * period) }

	// Message i goes down chain i % chains; each chain's end has a reader.
	lats := make([][]int64, cfg.chains)
	got := make([]int64, cfg.chains)
	var readers sync.WaitGroup
	readErrs := make([]error, cfg.chains)
	for c, out := range outs {
		want := total / int64(cfg.chains)
		if int64(c) < total%int64(cfg.chains) {
			want++
		}
		readers.Go(func() {
			br := bufio.NewReaderSize(out, 64<<10)
			msg := make([]byte, cfg.msgBytes)
			for got[c] < want {
				if _, err := io.ReadFull(br, msg); err != nil {
					readErrs[c] = err
					return
				}
				now := time.Now()
				if i := int64(binary.LittleEndian.Uint64(msg)); i >= first && i < total {
					lats[c] = append(lats[c], now.Sub(due(i)).Nanoseconds())
				}
				got[c]++
			}
		})
	}
	readDone := make(chan struct{})
	go func() {
		readers.Wait()
		close(readDone)
	}()

	w := newCPUWindow(watched, self(), nil)
	msg := make([]byte, cfg.msgBytes)
	for i := range total {
		if i == first {
			if err := w.start(); err != nil {
				return nil, err
			}
		}
		if d := time.Until(due(i)); d > 0 {
			time.Sleep(d)
		}
		binary.LittleEndian.PutUint64(msg, uint64(i))
		if _, err := ins[i%int64(cfg.chains)].Write(msg); err != nil {
			return nil, fmt.Errorf("send: %w", err)
		}
	}
	if err := w.stop(time.Since(due(first)).Seconds()); err != nil {
		return nil, err
	}
	select {
	case <-readDone:
	case <-time.After(cfg.drain):
		for _, c := range outs {
			_ = c.Close() // ends the readers
		}
		<-readDone
	}
	var received int64
	for _, n := range got {
		received += n
	}
	if received < total {
		if err := errors.Join(readErrs...); err != nil && !errors.Is(err, net.ErrClosed) {
			return nil, fmt.Errorf("receive: %w", err)
		}
	}
	units := total - first
	res := relayResult{
		header:   o.header(),
		Hops:     cfg.hops,
		Chains:   cfg.chains,
		Rate:     cfg.rate,
		Bytes:    cfg.msgBytes,
		GoMaxP:   cfg.gomaxprocs,
		GoDebug:  cfg.godebug,
		Sent:     total,
		Received: received,
		Lost:     total - received,
		Latency:  summarize(concat(lats)),
		CPU:      w.report("message", units),
	}
	if res.CPU != nil {
		res.PerHopUS = round3(res.CPU.Seconds["total"] * 1e6 / float64(units) / float64(cfg.hops))
	}
	return res, nil
}

// relayChains is the relay scenario's processes and its ends of them.
type relayChains struct {
	sink    net.Listener
	relays  []*helper
	ins     []net.Conn // chain c's first process reads ins[c]
	outs    []net.Conn // chain c's last process writes outs[c]
	watched []namedPID // the relays, relay1 first
}

// startRelayChains starts cfg.chains chains of cfg.hops forwarding
// processes. What it started is in the result, also on error: close it.
func startRelayChains(o *common, cfg relayConfig) (*relayChains, error) {
	ch := &relayChains{watched: make([]namedPID, cfg.chains*cfg.hops)}
	var err error
	if ch.sink, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return ch, err
	}
	for c := range cfg.chains {
		// Start the chain from its end: each process dials the next, the
		// last the sink.
		next := ch.sink.Addr().String()
		for i := cfg.hops - 1; i >= 0; i-- {
			n := c*cfg.hops + i + 1
			r, err := startRelayChild(next, cfg)
			if err != nil {
				return ch, fmt.Errorf("relay %d: %w", n, err)
			}
			ch.relays = append(ch.relays, r)
			ch.watched[n-1] = namedPID{name: "relay" + strconv.Itoa(n), pid: r.cmd.Process.Pid}
			ctx, cancel := context.WithTimeout(context.Background(), o.setupTimeout)
			next, err = r.expect(ctx, "listening ")
			cancel()
			if err != nil {
				return ch, fmt.Errorf("relay %d: %w", n, err)
			}
		}
		in, err := net.Dial("tcp", next)
		if err != nil {
			return ch, err
		}
		ch.ins = append(ch.ins, in)
		out, err := ch.sink.Accept()
		if err != nil {
			return ch, err
		}
		ch.outs = append(ch.outs, out)
	}
	return ch, nil
}

// close ends the chains: the first processes see their input close, and
// each relay is stopped before the benchmark's reading ends close.
func (ch *relayChains) close() {
	for _, c := range ch.ins {
		_ = c.Close()
	}
	for _, r := range ch.relays {
		r.stop()
	}
	for _, c := range ch.outs {
		_ = c.Close()
	}
	if ch.sink != nil {
		_ = ch.sink.Close()
	}
}

// startRelayChild starts a forwarding process that sends on to next.
func startRelayChild(next string, cfg relayConfig) (*helper, error) {
	env := os.Environ()
	if cfg.gomaxprocs != "default" {
		env = append(env, "GOMAXPROCS="+cfg.gomaxprocs)
	}
	if cfg.godebug != "none" {
		env = append(env, "GODEBUG="+cfg.godebug)
	}
	return startHelper(env, relayChildScenario, "-next", next, "-quiet")
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
				if errors.Is(err, io.EOF) {
					err = nil // the benchmark is done
				}
				failed <- err
				return
			}
		}
	}()
	return untilStdinCloses(failed)
}
