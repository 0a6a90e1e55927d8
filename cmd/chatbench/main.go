// Command chatbench measures a live gatewire deployment from the outside,
// as WebSocket chat clients and a Push API caller, and prints one JSON line
// per run on stdout (progress goes to stderr).
//
// Scenarios:
//
//	chatbench idle   -n 19000 -pids gateway=PID ...     memory of idle bound connections
//	chatbench chat   -mode closed|open -pairs P ...      1:1 chat throughput, latency, CPU per message
//	chatbench fanout -members K -op group|all ...        Push API SendToGroup/SendToAll fan-out
//	chatbench host   -duration 10s                       how much of the time the vCPUs are away
//	chatbench floor  -members K                          the kernel's own cost of a K-connection fan-out
//	chatbench relay  -hops N -rate R                     what crossing N Go processes costs a message at rate R
//	chatbench summary [-commit C] [FILE]                 a suite's lines as a Markdown table, against the targets
//
// The scenario may also be given as -scenario. bench/README.md describes
// every flag and every field of the output; scripts/bench.sh runs the
// whole suite against a cluster it starts itself.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout))
}

// exitUsage is the exit status of a bad command line.
const exitUsage = 2

// scenarioFlags registers each scenario's flags and returns its runner;
// the hidden ones are those of the helper processes some scenarios start.
var scenarioFlags = map[string]func(*flag.FlagSet) func(*common) (any, error){
	"idle":             idleFlags,
	"chat":             chatFlags,
	"fanout":           fanoutFlags,
	"host":             hostFlags,
	"floor":            floorFlags,
	"relay":            relayFlags,
	childScenario:      idleChildFlags,
	floorChildScenario: floorChildFlags,
	relayChildScenario: relayChildFlags,
}

// run runs one scenario and returns the exit status.
func run(args []string, stdin io.Reader, stdout io.Writer) int {
	if len(args) > 0 && args[0] == summaryScenario {
		return runSummary(args[1:], stdin, stdout)
	}
	scenario := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	} else {
		// -scenario may come anywhere; find it before the scenario's own
		// flags are known.
		for i, a := range args {
			v, ok := strings.CutPrefix(strings.TrimLeft(a, "-"), "scenario=")
			switch {
			case ok:
				scenario = v
				args = slices.Delete(slices.Clone(args), i, i+1)
			case strings.TrimLeft(a, "-") == "scenario" && i+1 < len(args):
				scenario = args[i+1]
				args = slices.Delete(slices.Clone(args), i, i+2)
			default:
				continue
			}
			break
		}
	}
	flagsOf, ok := scenarioFlags[scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "usage: chatbench idle|chat|fanout|host|floor|relay [flags] (or -scenario NAME); chatbench NAME -h lists the flags\n       %s\n", summaryUsage)
		return exitUsage
	}
	fs := flag.NewFlagSet("chatbench "+scenario, flag.ContinueOnError)
	var o common
	o.register(fs)
	runner := flagsOf(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "chatbench: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	o.scenario = scenario
	if err := o.finish(); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench:", err)
		return exitUsage
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "chatbench: -cpuprofile:", err)
			return 1
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	res, err := runner(&o)
	if o.memProfile != "" {
		if perr := writeHeapProfile(o.memProfile); perr != nil {
			fmt.Fprintln(os.Stderr, "chatbench: -memprofile:", perr)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatbench %s: %v\n", scenario, err)
		return 1
	}
	if res == nil { // the helper processes print no result
		return 0
	}
	line, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: encode result:", err)
		return 1
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		fmt.Fprintln(os.Stderr, "chatbench: write result:", err)
		return 1
	}
	return 0
}

// common holds the flags every scenario has.
type common struct {
	scenario     string
	ws           string
	urls         []string
	src          string
	jwtSecret    string
	tokenTTL     time.Duration
	uidPrefix    string
	pids         pidList
	metrics      metricsList
	dialConc     int
	setupTimeout time.Duration
	tags         tagList
	quiet        bool
	cpuProfile   string
	memProfile   string
	fdLimit      uint64
	dialer       *dialer
}

func (o *common) register(fs *flag.FlagSet) {
	fs.StringVar(&o.ws, "ws", "ws://127.0.0.1:8282/", "gateway WebSocket URLs, comma-separated; connections are spread over them in turn")
	fs.StringVar(&o.src, "src", "auto", `source addresses of the connections: "auto" (127.0.0.1-127.0.0.8 when every -ws URL is on loopback), "none", or comma-separated IPs`)
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "the workers' -jwt-secret: sign an HS256 bind token per uid (default $CHATBENCH_JWT_SECRET; empty: token-less binds, for workers with -insecure-bind)")
	fs.DurationVar(&o.tokenTTL, "token-ttl", time.Hour, "lifetime of the bind tokens")
	fs.StringVar(&o.uidPrefix, "uid-prefix", "", "prefix of every uid the run binds (default bench-<random>-, so runs never share uids)")
	fs.Var(&o.pids, "pids", "server processes to measure, name=pid,... (CPU: the process and all its descendants, e.g. a postmaster and its backends; idle: RSS)")
	fs.Var(&o.metrics, "metrics", "server processes whose GC pauses to report, name=http://host:port,... (their -metrics-addr; gc_pauses in the result)")
	fs.IntVar(&o.dialConc, "dial-concurrency", 32, "connections opened and bound at once")
	fs.DurationVar(&o.setupTimeout, "setup-timeout", 5*time.Minute, "how long opening and binding every connection may take")
	fs.Var(&o.tags, "tag", "key=value copied into the result's tags (repeatable), e.g. -tag commit=abc123")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the benchmark's own CPU profile to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write the benchmark's own allocation profile to this file at the end")
}

// finish checks the common flags and prepares the dialer.
func (o *common) finish() error {
	for _, u := range strings.Split(o.ws, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.urls = append(o.urls, u)
		}
	}
	if len(o.urls) == 0 {
		return errors.New("-ws: no URL")
	}
	if o.jwtSecret == "" {
		o.jwtSecret = os.Getenv("CHATBENCH_JWT_SECRET")
	}
	if o.uidPrefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.uidPrefix = "bench-" + hex.EncodeToString(b) + "-"
	}
	if o.dialConc < 1 {
		return errors.New("-dial-concurrency must be at least 1")
	}
	if o.jwtSecret != "" && len(o.jwtSecret) < 32 {
		return fmt.Errorf("-jwt-secret is %d bytes; the workers want at least 32", len(o.jwtSecret))
	}
	limit, err := raiseFDLimit()
	if err != nil {
		return fmt.Errorf("raise the open-file limit: %w", err)
	}
	o.fdLimit = limit
	d, err := newDialer(o.urls, o.src, o.jwtSecret, o.tokenTTL)
	if err != nil {
		return err
	}
	o.dialer = d
	return nil
}

// header is the first part of every result line.
type header struct {
	Bench    string            `json:"bench"` // always "chatbench"
	Scenario string            `json:"scenario"`
	TS       string            `json:"ts"` // when the run ended, RFC 3339 UTC
	Tags     map[string]string `json:"tags,omitempty"`
	WS       []string          `json:"ws"`
	Bind     string            `json:"bind"` // "token" or "insecure"
	Sources  int               `json:"sources"`
	GoMaxP   int               `json:"client_gomaxprocs"`
}

func (o *common) header() header {
	bind := "insecure"
	if o.jwtSecret != "" {
		bind = "token"
	}
	srcs := len(o.dialer.sources)
	if o.dialer.sources[0] == "" {
		srcs = 0
	}
	return header{
		Bench:    "chatbench",
		Scenario: o.scenario,
		TS:       time.Now().UTC().Format(time.RFC3339),
		Tags:     o.tags.m,
		WS:       o.urls,
		Bind:     bind,
		Sources:  srcs,
		GoMaxP:   runtime.GOMAXPROCS(0),
	}
}

// self names the benchmark's own process (and its children) for the CPU
// window.
func self() []namedPID { return []namedPID{{name: selfName, pid: os.Getpid()}} }

// selfName names the benchmark's own processes in a CPU window; -pids may
// not use it.
const selfName = "chatbench"

// tagList is the -tag flag.
type tagList struct{ m map[string]string }

func (t *tagList) String() string {
	var parts []string
	for k, v := range t.m {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (t *tagList) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	if t.m == nil {
		t.m = map[string]string{}
	}
	t.m[k] = v
	return nil
}

// writeHeapProfile writes the allocation profile to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
