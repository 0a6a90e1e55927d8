package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := []byte("4242 (post gres) (x)) S 17 4242 4242 0 -1 4194560 1200 0 3 0 150 25 7 3 20 0 1 0 98 1000 500\n")
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != 17 || st.ticks != 150+25+7+3 {
		t.Errorf("parseStat = %+v, want ppid 17, ticks 185", st)
	}
	if _, err := parseStat([]byte("12 (short) S 1 2")); err == nil {
		t.Error("parseStat accepted a truncated line")
	}
}

func TestSumTrees(t *testing.T) {
	procs := map[int]procStat{
		1:   {ppid: 0, ticks: 1000},
		100: {ppid: 1, ticks: 10}, // postmaster
		101: {ppid: 100, ticks: 5},
		102: {ppid: 100, ticks: 7},
		103: {ppid: 102, ticks: 1}, // a grandchild
		200: {ppid: 1, ticks: 40},  // gateway
		300: {ppid: 1, ticks: 99},  // not watched
	}
	got, err := sumTrees(procs, []namedPID{{"postgres", 100}, {"gateway", 200}})
	if err != nil {
		t.Fatal(err)
	}
	if got["postgres"] != 23 || got["gateway"] != 40 || len(got) != 2 {
		t.Errorf("sumTrees = %v, want postgres 23, gateway 40", got)
	}
	if _, err := sumTrees(procs, []namedPID{{"gone", 999}}); err == nil {
		t.Error("sumTrees accepted a missing process")
	}
}

// TestSumTreesNested: a watched process inside another watched tree (a
// server the benchmark started itself) counts for itself, not for the
// tree it is in.
func TestSumTreesNested(t *testing.T) {
	procs := map[int]procStat{
		1:  {ppid: 0, ticks: 1000},
		50: {ppid: 1, ticks: 3},  // chatbench
		51: {ppid: 50, ticks: 8}, // a relay it started
		52: {ppid: 51, ticks: 2}, // the relay's child
		53: {ppid: 50, ticks: 4}, // an idle helper
	}
	got, err := sumTrees(procs, []namedPID{{"relay1", 51}, {selfName, 50}})
	if err != nil {
		t.Fatal(err)
	}
	if got["relay1"] != 10 || got[selfName] != 7 {
		t.Errorf("sumTrees = %v, want relay1 10, %s 7", got, selfName)
	}
}

func TestParseRSS(t *testing.T) {
	kb, err := parseRSS([]byte("Name:\tgateway\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n"))
	if err != nil || kb != 12345 {
		t.Errorf("parseRSS = %d, %v; want 12345", kb, err)
	}
	if _, err := parseRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("parseRSS found an RSS in a status without VmRSS")
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	procs, err := allStats()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sumTrees(procs, []namedPID{{"me", os.Getpid()}}); err != nil {
		t.Fatal(err)
	}
	if kb, err := rssKB(os.Getpid()); err != nil || kb <= 0 {
		t.Errorf("rssKB(self) = %d, %v", kb, err)
	}
}

func TestQuantile(t *testing.T) {
	s := make([]int64, 1000)
	for i := range s {
		s[i] = int64(1000-i) * 1e6 // 1 to 1000 ms, unsorted on purpose
	}
	sum := summarize(s)
	if sum.N != 1000 || sum.P50 != 500 || sum.P99 != 990 || sum.P999 != 999 || sum.Max != 1000 || sum.Mean != 500.5 {
		t.Errorf("summarize = %+v", sum)
	}
	if q := quantile([]int64{7}, 0.999); q != 7 {
		t.Errorf("quantile of one sample = %d", q)
	}
	if z := summarize(nil); z.N != 0 {
		t.Errorf("summarize(nil) = %+v", z)
	}
}

func TestFrameFields(t *testing.T) {
	f := []byte(`{"type":"text","id":"ab","frontId":"x","toId":"y","date":"2026-01-01 00:00:00","data":"123 xx","raw":"123 xx","msg_id":4}`)
	if got := string(strField(f, patType)); got != "text" {
		t.Errorf("type = %q", got)
	}
	v, ok := leadingInt(strField(f, patRaw))
	if !ok || v != 123 {
		t.Errorf("raw = %d, %v; want 123", v, ok)
	}
	if strField(f, patCode) != nil {
		t.Error("found a missing field")
	}
	if _, ok := leadingInt([]byte("abc")); ok {
		t.Error("leadingInt parsed letters")
	}
}

func TestPidList(t *testing.T) {
	var l pidList
	if err := l.Set("gateway1=10, postgres=20"); err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 || l[1] != (namedPID{"postgres", 20}) || l.String() != "gateway1=10,postgres=20" {
		t.Errorf("pidList = %v", l)
	}
	for _, bad := range []string{"x", "x=", "=3", "x=-1", "a=1,a=2", selfName + "=5"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestSources(t *testing.T) {
	d, err := newDialer([]string{"ws://127.0.0.1:8282/", "ws://localhost:8283/"}, "auto", "", 0)
	if err != nil || len(d.sources) != autoSources || d.sources[1] != "127.0.0.2" {
		t.Errorf("auto sources on loopback = %v, %v", d.sources, err)
	}
	d, err = newDialer([]string{"ws://10.0.0.1:8282/"}, "auto", "", 0)
	if err != nil || len(d.sources) != 1 || d.sources[0] != "" {
		t.Errorf("auto sources off loopback = %v, %v", d.sources, err)
	}
	if _, err := newDialer([]string{"http://x/"}, "none", "", 0); err == nil {
		t.Error("accepted an http:// URL")
	}
}

func TestParseHostBusy(t *testing.T) {
	busy, err := parseHostBusy([]byte("cpu  100 5 50 1000 30 2 3 1 7 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || busy != 100+5+50+2+3 {
		t.Errorf("parseHostBusy = %d, %v; want 160", busy, err)
	}
	if _, err := parseHostBusy([]byte("intr 1 2 3\n")); err == nil {
		t.Error("parseHostBusy accepted another line")
	}
}

// pauseText is a /metrics exposition with a GC pause histogram whose
// buckets hold n1, n2, n3 and nInf pauses (cumulative counts follow).
func pauseText(n1, n2, n3, nInf int) string {
	return fmt.Sprintf(`# HELP gatewire_go_gc_pause_seconds Stop-the-world pauses.
# TYPE gatewire_go_gc_pause_seconds histogram
gatewire_go_gc_pause_seconds_bucket{le="0.0001"} %d
gatewire_go_gc_pause_seconds_bucket{le="0.000524288"} %d
gatewire_go_gc_pause_seconds_bucket{le="0.001048576"} %d
gatewire_go_gc_pause_seconds_bucket{le="+Inf"} %d
gatewire_go_gc_pause_seconds_sum 0.5
gatewire_go_gc_pause_seconds_count %d
go_gc_duration_seconds{quantile="1"} 0.001
`, n1, n1+n2, n1+n2+n3, n1+n2+n3+nInf, n1+n2+n3+nInf)
}

func TestGCPauses(t *testing.T) {
	before, err := parsePauseHist(strings.NewReader(pauseText(50, 5, 0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		after string
		want  gcSummary
	}{
		{"none in the window", pauseText(50, 5, 0, 0), gcSummary{}},
		{"all small", pauseText(150, 5, 0, 0), gcSummary{N: 100, P50: 0.1, P99: 0.1, Max: 0.1}},
		{"a slow tail", pauseText(148, 6, 1, 0), gcSummary{N: 100, P50: 0.1, P99: 0.524, Max: 1.049}},
		{"beyond the last bound", pauseText(149, 5, 0, 1), gcSummary{N: 100, P50: 0.1, P99: 0.1, Max: -1}},
	} {
		after, err := parsePauseHist(strings.NewReader(tc.after))
		if err != nil {
			t.Fatal(err)
		}
		got, err := after.since(before)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: since = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if _, err := parsePauseHist(strings.NewReader("go_gc_duration_seconds_count 3\n")); err == nil {
		t.Error("parsePauseHist accepted an exposition without the histogram")
	}
}

func TestMetricsList(t *testing.T) {
	var l metricsList
	if err := l.Set("gateway1=http://127.0.0.1:9282, worker1=http://127.0.0.1:9283/"); err != nil {
		t.Fatal(err)
	}
	want := metricsList{{"gateway1", "http://127.0.0.1:9282/metrics"}, {"worker1", "http://127.0.0.1:9283/metrics"}}
	if !slices.Equal(l, want) {
		t.Errorf("Set = %v, want %v", l, want)
	}
	for _, bad := range []string{"gateway1", "gateway1=127.0.0.1:9282", "a=http://x:1,a=http://y:2"} {
		if err := l.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestParseDone(t *testing.T) {
	if d, err := parseDone("done 1500"); err != nil || d != 1500*time.Nanosecond {
		t.Errorf(`parseDone("done 1500") = %v, %v; want 1.5µs`, d, err)
	}
	for _, bad := range []string{"ready", "done", "done x", ""} {
		if _, err := parseDone(bad); err == nil {
			t.Errorf("parseDone(%q) = nil error, want one", bad)
		}
	}
}
