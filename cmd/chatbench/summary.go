package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// summaryScenario reads result lines instead of measuring: the figures of
// one suite as a Markdown table, each run beside the target it answers to.
const summaryScenario = "summary"

// The targets of the project's performance issue, which the summary
// holds each run of the right size against.
const (
	targetIdleBytes  = 10 * 1024 // per idle bound connection, at ≥ 19,000 on one gateway
	targetIdleConns  = 19000
	targetOpenRate   = 2200 // say/s over 2 gateways, persisted
	targetOpenCPUMS  = 0.25 // and server CPU per say at most this
	targetOpenP99MS  = 5.0  // and p99 to the peer's text at most this
	targetFanMembers = 10000
	targetFanMS      = 50.0 // every call delivered to all members within
	targetGCConns    = 19000
	targetGCP99MS    = 1.0
	targetScaleRatio = 1.1 // CPU per say, most gateways against one
	targetGateways   = 2
)

const summaryUsage = "usage: chatbench summary [-commit C] [FILE]   (FILE: result lines, default bench/results.jsonl; - reads stdin)"

// runSummary is chatbench summary: it prints the last suite of FILE (of
// commit -commit, when given) as a Markdown table.
func runSummary(args []string, stdin io.Reader, stdout io.Writer) int {
	fs := flag.NewFlagSet("chatbench summary", flag.ContinueOnError)
	commit := fs.String("commit", "", "summarise the last suite of this commit (a prefix of tags.commit); default: the file's last suite")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), summaryUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 1 {
		fmt.Fprintln(os.Stderr, summaryUsage)
		return exitUsage
	}
	path := "bench/results.jsonl"
	if fs.NArg() == 1 {
		path = fs.Arg(0)
	}
	in := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chatbench summary:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	lines, err := readResults(in)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chatbench summary: %s: %v\n", path, err)
		return 1
	}
	suite := lastSuite(lines, *commit)
	if len(suite) == 0 {
		what := "result lines"
		if *commit != "" {
			what += " of commit " + *commit
		}
		fmt.Fprintf(os.Stderr, "chatbench summary: %s has no %s\n", path, what)
		return 1
	}
	rows, err := summaryRows(suite)
	if err == nil {
		err = writeSummary(stdout, suite, rows)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatbench summary:", err)
		return 1
	}
	return 0
}

// resultLine is one line of a results file, kept whole for decoding by
// scenario.
type resultLine struct {
	header
	raw []byte
}

// readResults reads the JSON lines of r; other lines (a shell's echoes)
// are skipped.
func readResults(r io.Reader) ([]resultLine, error) {
	var lines []resultLine
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		l := resultLine{raw: slices.Clone(b)}
		if err := json.Unmarshal(b, &l.header); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if l.Bench == "chatbench" {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

// lastSuite returns the lines of the last suite among lines (of commit,
// when it is not empty): from the last line whose run is "host", which
// every suite begins with, to the end; all of them when none is.
func lastSuite(lines []resultLine, commit string) []resultLine {
	if commit != "" {
		lines = slices.DeleteFunc(slices.Clone(lines), func(l resultLine) bool {
			return !strings.HasPrefix(l.Tags["commit"], commit)
		})
	}
	start := 0
	for i, l := range lines {
		if l.Tags["run"] == "host" {
			start = i
		}
	}
	return lines[start:]
}

// summaryRow is one row of the table.
type summaryRow struct {
	run, figures, target, verdict string
}

// summaryRows turns a suite's lines into rows, in the suite's order, with a
// row for the scaling runs' means after the last of them.
func summaryRows(lines []resultLine) ([]summaryRow, error) {
	var rows []summaryRow
	scale := scaling{}
	lastScale := -1
	for _, l := range lines {
		row, err := summarizeLine(l, scale)
		if err != nil {
			return nil, fmt.Errorf("run %q: %w", l.Tags["run"], err)
		}
		rows = append(rows, row)
		if strings.HasPrefix(l.Tags["run"], "scale-") {
			lastScale = len(rows)
		}
	}
	if lastScale >= 0 && len(scale) > 0 {
		rows = slices.Insert(rows, lastScale, scale.row())
	}
	return rows, nil
}

// summarizeLine decodes l by its scenario and describes it; the scaling
// runs also go into scale.
func summarizeLine(l resultLine, scale scaling) (summaryRow, error) {
	row := summaryRow{run: cmp.Or(l.Tags["run"], l.Scenario)}
	var err error
	switch l.Scenario {
	case "host":
		var r hostResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row.figures = fmt.Sprintf("vCPUs away %.1f%% of the time, gaps up to %.1f ms", 100*r.LostFraction, r.MaxGapMS)
		}
	case "idle":
		var r idleResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row.figures = fmt.Sprintf("%s connections: %s bytes per connection", thousands(float64(r.Conns)), thousands(r.RSSPerConn))
			if r.Conns >= targetIdleConns {
				row.target = fmt.Sprintf("≤ %s bytes at %s", thousands(targetIdleBytes), thousands(targetIdleConns))
				row.verdict = verdict(r.RSSPerConn <= targetIdleBytes)
			}
		}
	case "chat":
		var r chatResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row = summarizeChat(row, l, r)
			if g, ok := strings.CutPrefix(row.run, "scale-"); ok && r.CPU != nil {
				scale.add(g, r.CPU)
			}
		}
	case "fanout":
		var r fanoutResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row.figures = fmt.Sprintf("%s members: call to last delivery p50 %s, p99 %s ms; %s deliveries/s; %d missing",
				thousands(float64(r.Members)), msText(r.Latency.P50), msText(r.Latency.P99), thousands(r.DeliveriesPerS), r.Missing)
			if r.CPU != nil && r.CPU.Units > 0 {
				row.figures += "; " + fanoutCPU(r.CPU)
			}
			if r.Members >= targetFanMembers && len(r.WS) == targetGateways {
				row.target = fmt.Sprintf("p99 < %g ms", targetFanMS)
				row.verdict = verdict(r.Complete == r.Rounds && r.Latency.P99 < targetFanMS)
			}
		}
	case "floor":
		var r floorResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row.figures = fmt.Sprintf("%s sockets, no gatewire code: p50 %s, p99 %s ms a round; writer %.1f µs, reader %.1f µs a frame",
				thousands(float64(r.Members)), msText(r.Latency.P50), msText(r.Latency.P99), r.WriterCPUUS, r.ReaderCPUUS)
		}
	case "relay":
		var r relayResult
		if err = json.Unmarshal(l.raw, &r); err == nil {
			row.figures = fmt.Sprintf("no gatewire code: %.1f µs a message and process, %s messages/s through %d chain(s) of %d; %d lost",
				r.PerHopUS, thousands(r.Rate), r.Chains, r.Hops, r.Lost)
		}
	default:
		row.figures = "(scenario " + strconv.Quote(l.Scenario) + ")"
	}
	return row, err
}

// summarizeChat describes a chat run and, for the runs a target speaks
// of, holds it against that target.
func summarizeChat(row summaryRow, l resultLine, r chatResult) summaryRow {
	row.figures = fmt.Sprintf("%s say/s", thousands(r.SayPerS))
	if r.CPU != nil {
		row.figures += fmt.Sprintf("; %.3f ms CPU a say (%s)", r.CPU.PerUnitMS["total"], perRole(r.CPU))
	}
	row.figures += fmt.Sprintf("; p50 %s, p99 %s ms; %d lost", msText(r.Latency.P50), msText(r.Latency.P99), r.Lost)
	switch {
	case l.Tags["run"] == "gc":
		row.figures += fmt.Sprintf("; %s idle connections held; largest GC pause %s", cmp.Or(l.Tags["idle_conns"], "?"), gcMaxima(r.GC))
		if n, _ := strconv.Atoi(l.Tags["idle_conns"]); n >= targetGCConns && len(r.GC) > 0 {
			row.target = fmt.Sprintf("GC pause p99 < %g ms", targetGCP99MS)
			met := true
			for _, g := range r.GC {
				met = met && g.P99 >= 0 && g.P99 < targetGCP99MS // -1: over 1 s
			}
			row.verdict = verdict(met)
		}
	case r.Mode == "open" && r.Rate >= targetOpenRate && len(r.WS) == targetGateways && r.CPU != nil:
		row.target = fmt.Sprintf("≤ %g ms and p99 ≤ %g ms", targetOpenCPUMS, targetOpenP99MS)
		row.verdict = verdict(r.Lost == 0 && r.CPU.PerUnitMS["total"] <= targetOpenCPUMS && r.Latency.P99 <= targetOpenP99MS)
	}
	return row
}

// scaling gathers the scaling runs' CPU per say by gateway count.
type scaling map[string]*scaleCount

type scaleCount struct {
	runs         int
	total, owned float64 // summed over the runs
}

// means returns the count's mean CPU per say: the whole cluster's, and
// gatewire's own processes' (what the gateway count can change).
func (sc *scaleCount) means() (total, owned float64) {
	return sc.total / float64(sc.runs), sc.owned / float64(sc.runs)
}

func (s scaling) add(gateways string, c *cpuReport) {
	sc := s[gateways]
	if sc == nil {
		sc = &scaleCount{}
		s[gateways] = sc
	}
	sc.runs++
	for name, v := range c.PerUnitMS {
		switch role(name) {
		case "total":
			sc.total += v
		case "register", "gateways", "workers":
			sc.owned += v
		}
	}
}

// row gives each count's mean CPU per say and its ratio to the fewest
// gateways', and holds the most gateways' ratio against the target.
func (s scaling) row() summaryRow {
	counts := slices.SortedFunc(maps.Keys(s), func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return cmp.Compare(x, y)
	})
	baseTotal, baseOwned := s[counts[0]].means()
	var parts []string
	var ratio float64 // the most gateways' against the fewest
	for _, g := range counts {
		total, owned := s[g].means()
		ratio = total / baseTotal
		parts = append(parts, fmt.Sprintf("%s: %.3f ms a say (ratio %.2f; gatewire's processes %.3f, ratio %.2f)",
			g, total, ratio, owned, owned/baseOwned))
	}
	row := summaryRow{run: "scaling", figures: "mean over the runs, by gateways: " + strings.Join(parts, "; ")}
	if len(counts) > 1 && counts[0] == "1" {
		row.target = fmt.Sprintf("ratio ≤ %g", targetScaleRatio)
		row.verdict = verdict(ratio <= targetScaleRatio)
	}
	return row
}

// writeSummary prints the table with a heading naming the suite.
func writeSummary(w io.Writer, lines []resultLine, rows []summaryRow) error {
	first, last := lines[0], lines[len(lines)-1]
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "Suite %q of commit %s, %s to %s, %s CPUs (%d lines)\n\n",
		first.Tags["suite"], cmp.Or(first.Tags["commit"], "?"), first.TS, last.TS, cmp.Or(first.Tags["host_cpus"], "?"), len(lines))
	fmt.Fprintln(bw, "| run | figures | target | |")
	fmt.Fprintln(bw, "| --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Fprintf(bw, "| %s | %s | %s | %s |\n", r.run, r.figures, r.target, r.verdict)
	}
	return bw.Flush()
}

// verdict says whether a run met its target.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**not met**"
}

// role names what a -pids name measures: "gateways" for gateway1,
// gateway2, ..., "workers" likewise, and any other name (register,
// postgres, redis, total) as it is.
func role(name string) string {
	for _, r := range []string{"gateway", "worker"} {
		if n, ok := strings.CutPrefix(name, r); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return r + "s"
		}
	}
	return name
}

// perRole sums a CPU report per unit by role.
func perRole(c *cpuReport) string {
	sums := map[string]float64{}
	for name, v := range c.PerUnitMS {
		if r := role(name); r != "total" {
			sums[r] += v
		}
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(sums)) {
		parts = append(parts, fmt.Sprintf("%s %.3f", name, sums[name]))
	}
	return strings.Join(parts, ", ")
}

// fanoutCPU gives a fan-out's CPU per frame: each gateway's per frame it
// wrote (a delivery is a frame one of them wrote; the members are spread
// evenly) and the clients' per frame they read.
func fanoutCPU(c *cpuReport) string {
	var gateways []string
	for _, name := range slices.Sorted(maps.Keys(c.Seconds)) {
		if role(name) == "gateways" {
			gateways = append(gateways, name)
		}
	}
	var parts []string
	for _, name := range gateways {
		parts = append(parts, fmt.Sprintf("%s %.1f", name, 1e6*c.Seconds[name]/(float64(c.Units)/float64(len(gateways)))))
	}
	parts = append(parts, fmt.Sprintf("the clients %.1f", 1e6*c.ClientS/float64(c.Units)))
	return "CPU a frame: " + strings.Join(parts, ", ") + " µs"
}

// gcMaxima lists each process's largest pause.
func gcMaxima(gc map[string]gcSummary) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(gc)) {
		if gc[name].N > 0 {
			parts = append(parts, fmt.Sprintf("%s %.3f", name, gc[name].Max))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ") + " ms"
}

// msText prints a latency in ms with three significant digits at most.
func msText(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// thousands prints v rounded to a whole number (halves away from zero),
// with commas between groups of three digits.
func thousands(v float64) string {
	s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
