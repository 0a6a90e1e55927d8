package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// resultJSON encodes a result as the suite writes it, with tags run and
// commit and its scenario.
func resultJSON(t *testing.T, scenario, run, commit string, res interface{ setHeader(header) }, extra map[string]string) string {
	t.Helper()
	h := header{Bench: "chatbench", Scenario: scenario, TS: "2026-12-07T00:00:00Z",
		Tags: map[string]string{"run": run, "commit": commit, "suite": "full", "host_cpus": "2"}, WS: []string{"ws://a/", "ws://b/"}}
	for k, v := range extra {
		h.Tags[k] = v
	}
	res.setHeader(h)
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (r *hostResult) setHeader(h header)   { r.header = h }
func (r *idleResult) setHeader(h header)   { r.header = h }
func (r *chatResult) setHeader(h header)   { r.header = h }
func (r *fanoutResult) setHeader(h header) { r.header = h }

// openChat is an open-loop run at rate with cpu ms a say in total and the
// given p99.
func openChat(rate, cpu, p99 float64, perProcess map[string]float64) *chatResult {
	per := map[string]float64{"total": cpu}
	for k, v := range perProcess {
		per[k] = v
	}
	return &chatResult{Mode: "open", Rate: rate, SayPerS: rate, Latency: latSummary{P50: 1, P99: p99},
		CPU: &cpuReport{PerUnitMS: per, Seconds: map[string]float64{}, Units: 100}}
}

// suiteLines is a small suite of commit c: idle, an open loop, a fan-out,
// the gc run and scaling runs of 1 and 4 gateways.
func suiteLines(t *testing.T, c string, idleBytes, openCPU, gcP99 float64, scale1, scale4 []float64) []string {
	lines := []string{
		resultJSON(t, "host", "host", c, &hostResult{LostFraction: 0.01, MaxGapMS: 3}, nil),
		resultJSON(t, "idle", "idle", c, &idleResult{Conns: 19000, RSSPerConn: idleBytes}, nil),
		resultJSON(t, "chat", "chat-open", c, openChat(2200, openCPU, 4, nil), nil),
		resultJSON(t, "fanout", "fanout-group", c, &fanoutResult{Members: 10000, Rounds: 2, Complete: 2, Latency: latSummary{P50: 30, P99: 45}}, nil),
	}
	gc := openChat(800, 0.5, 9, nil)
	gc.GC = map[string]gcSummary{"gateway1": {N: 3, P99: 0.2, Max: 0.2}, "gateway2": {N: 2, P99: gcP99, Max: gcP99}}
	lines = append(lines, resultJSON(t, "chat", "gc", c, gc, map[string]string{"idle_conns": "19000"}))
	for _, v := range scale1 {
		lines = append(lines, resultJSON(t, "chat", "scale-1", c, openChat(800, v, 9, map[string]float64{"gateway1": v / 2, "postgres": v / 2}), map[string]string{"gateways": "1"}))
	}
	for _, v := range scale4 {
		lines = append(lines, resultJSON(t, "chat", "scale-4", c, openChat(800, v, 9, map[string]float64{"gateway1": v / 4, "gateway2": v / 4, "postgres": v / 2}), map[string]string{"gateways": "4"}))
	}
	return append(lines, resultJSON(t, "host", "host-end", c, &hostResult{}, nil))
}

// summaryOf runs chatbench summary with args on input and returns its
// exit status and output.
func summaryOf(t *testing.T, input string, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := run(append([]string{"summary"}, args...), strings.NewReader(input), &out)
	return code, out.String()
}

// rowOf returns the table row of run (the first, when several).
func rowOf(t *testing.T, table, run string) string {
	t.Helper()
	for _, l := range strings.Split(table, "\n") {
		if strings.HasPrefix(l, "| "+run+" |") {
			return l
		}
	}
	t.Fatalf("no row %q in\n%s", run, table)
	return ""
}

func TestSummaryVerdicts(t *testing.T) {
	met := suiteLines(t, "aaa111", 9000, 0.24, 0.5, []float64{1.0, 1.0}, []float64{1.05, 1.05})
	missed := suiteLines(t, "bbb222", 11000, 0.30, 1.2, []float64{1.0, 0.8}, []float64{1.0, 1.0})
	input := "== a shell's echo\n" + strings.Join(met, "\n") + "\n" + strings.Join(missed, "\n") + "\n"

	code, table := summaryOf(t, input, "-commit", "aaa", "-")
	if code != 0 {
		t.Fatalf("summary -commit aaa: exit %d\n%s", code, table)
	}
	if !strings.Contains(table, "of commit aaa111") {
		t.Errorf("heading does not name the commit:\n%s", table)
	}
	for _, run := range []string{"idle", "chat-open", "gc", "scaling"} {
		if row := rowOf(t, table, run); !strings.HasSuffix(row, "| met |") {
			t.Errorf("row %s: want met, got %s", run, row)
		}
	}
	if row := rowOf(t, table, "fanout-group"); !strings.Contains(row, "p99 45.0 ms") || !strings.HasSuffix(row, "| met |") {
		t.Errorf("fan-out row: %s", row)
	}
	if row := rowOf(t, table, "scaling"); !strings.Contains(row, "4: 1.050 ms a say (ratio 1.05") {
		t.Errorf("scaling row: %s", row)
	}

	// Without -commit: the file's last suite, whose runs all miss.
	code, table = summaryOf(t, input, "-")
	if code != 0 || !strings.Contains(table, "of commit bbb222") {
		t.Fatalf("summary: exit %d\n%s", code, table)
	}
	for _, run := range []string{"idle", "chat-open", "gc", "scaling"} {
		if row := rowOf(t, table, run); !strings.HasSuffix(row, "| **not met** |") {
			t.Errorf("row %s: want not met, got %s", run, row)
		}
	}
	// Scaling: means 0.9 and 1.0, ratio 1.11; the row follows the last
	// scaling run.
	if row := rowOf(t, table, "scaling"); !strings.Contains(row, "1: 0.900 ms a say") || !strings.Contains(row, "ratio 1.11") {
		t.Errorf("scaling row: %s", row)
	}
	rows := strings.Split(strings.TrimSpace(table), "\n")
	if !strings.HasPrefix(rows[len(rows)-2], "| scaling |") || !strings.HasPrefix(rows[len(rows)-3], "| scale-4 |") {
		t.Errorf("the scaling row is not after the last scaling run:\n%s", table)
	}
}

func TestSummarySmallRunsHaveNoVerdict(t *testing.T) {
	lines := []string{
		resultJSON(t, "idle", "idle", "c", &idleResult{Conns: 20, RSSPerConn: 50000}, nil),
		resultJSON(t, "chat", "chat-open", "c", openChat(50, 3, 40, nil), nil),
		resultJSON(t, "fanout", "fanout-group", "c", &fanoutResult{Members: 10, Latency: latSummary{P99: 300}}, nil),
	}
	code, table := summaryOf(t, strings.Join(lines, "\n"), "-")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, table)
	}
	if strings.Contains(table, "met |") {
		t.Errorf("runs smaller than their targets got a verdict:\n%s", table)
	}
}

func TestSummaryErrors(t *testing.T) {
	line := resultJSON(t, "host", "host", "abc", &hostResult{}, nil)
	if code, _ := summaryOf(t, line, "-commit", "zzz", "-"); code != 1 {
		t.Errorf("an unknown commit: exit %d, want 1", code)
	}
	if code, _ := summaryOf(t, "{not json\n", "-"); code != 1 {
		t.Errorf("a broken line: exit %d, want 1", code)
	}
	if code, _ := summaryOf(t, line, "-no-such-flag"); code != exitUsage {
		t.Errorf("a bad flag: exit %d, want %d", code, exitUsage)
	}
	if code, _ := summaryOf(t, line, filepath.Join(t.TempDir(), "missing.jsonl")); code != 1 {
		t.Errorf("a missing file: exit %d, want 1", code)
	}
	f := filepath.Join(t.TempDir(), "r.jsonl")
	if err := os.WriteFile(f, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := summaryOf(t, "", f); code != 0 || !strings.Contains(out, "| host |") {
		t.Errorf("a file: exit %d\n%s", code, out)
	}
}

func TestThousands(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 9148.5: "9,149", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := thousands(v); got != want {
			t.Errorf("thousands(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestRole(t *testing.T) {
	for name, want := range map[string]string{"gateway1": "gateways", "gateway12": "gateways", "worker2": "workers",
		"register": "register", "postgres": "postgres", "total": "total", "gateway": "gateway", "gatewayx": "gatewayx"} {
		if got := role(name); got != want {
			t.Errorf("role(%q) = %q, want %q", name, got, want)
		}
	}
}
