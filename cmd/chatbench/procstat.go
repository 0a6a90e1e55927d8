package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// clockTicks is the unit of the CPU times in /proc/<pid>/stat (USER_HZ),
// which Linux fixes at 100 on every architecture it exports to user space.
const clockTicks = 100

// namedPID is one server process the benchmark watches, as given by -pids.
type namedPID struct {
	name string
	pid  int
}

// pidList is the -pids flag: name=pid pairs, comma-separated.
type pidList []namedPID

func (l *pidList) String() string {
	var parts []string
	for _, p := range *l {
		parts = append(parts, p.name+"="+strconv.Itoa(p.pid))
	}
	return strings.Join(parts, ",")
}

func (l *pidList) Set(s string) error {
	*l = nil
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, pidText, ok := strings.Cut(part, "=")
		pid, err := strconv.Atoi(pidText)
		if !ok || name == "" || err != nil || pid <= 0 {
			return fmt.Errorf("want name=pid, got %q", part)
		}
		if seen[name] {
			return fmt.Errorf("name %q given twice", name)
		}
		if name == selfName {
			return fmt.Errorf("name %q is the benchmark's own", name)
		}
		seen[name] = true
		*l = append(*l, namedPID{name: name, pid: pid})
	}
	return nil
}

// procStat is what the benchmark uses of one /proc/<pid>/stat line.
type procStat struct {
	ppid int
	// ticks is utime+stime+cutime+cstime: the process's own CPU time and
	// that of its children it has reaped. Summing it over the live
	// processes of a tree counts every CPU tick once: a reaped child is no
	// longer in the tree.
	ticks int64
}

// parseStat parses a /proc/<pid>/stat line. The command name (field 2) is
// in parentheses and may hold spaces and parentheses itself, so the
// fields are counted from the last ')'.
func parseStat(line []byte) (procStat, error) {
	i := bytes.LastIndexByte(line, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name")
	}
	// After ") ": state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8)
	// flags(9) minflt(10) cminflt(11) majflt(12) cmajflt(13) utime(14)
	// stime(15) cutime(16) cstime(17).
	f := bytes.Fields(line[i+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 15", len(f))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, fmt.Errorf("ppid: %w", err)
	}
	var ticks int64
	for _, k := range []int{11, 12, 13, 14} {
		v, err := strconv.ParseInt(string(f[k]), 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("field %d: %w", k+3, err)
		}
		ticks += v
	}
	return procStat{ppid: ppid, ticks: ticks}, nil
}

// readStat reads /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// sumTrees sums the ticks of each watched process's tree in procs.
func sumTrees(procs map[int]procStat, watched []namedPID) (map[string]int64, error) {
	root := make(map[int]string, len(watched))
	for _, w := range watched {
		if _, ok := procs[w.pid]; !ok {
			return nil, fmt.Errorf("%s: no process %d", w.name, w.pid)
		}
		root[w.pid] = w.name
	}
	owner := make(map[int]string, len(procs)) // pid → watched name, "" for none
	var find func(pid, depth int) string
	find = func(pid, depth int) string {
		if name, ok := root[pid]; ok {
			return name
		}
		if name, ok := owner[pid]; ok {
			return name
		}
		st, ok := procs[pid]
		name := ""
		if ok && st.ppid > 0 && st.ppid != pid && depth < 64 {
			name = find(st.ppid, depth+1)
		}
		owner[pid] = name
		return name
	}
	sums := make(map[string]int64, len(watched))
	for _, w := range watched {
		sums[w.name] = 0
	}
	for pid, st := range procs {
		if name := find(pid, 0); name != "" {
			sums[name] += st.ticks
		}
	}
	return sums, nil
}

// allStats reads the stat line of every process. Processes that exit
// while the directory is read are skipped.
func allStats() (map[int]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	if err != nil {
		return nil, err
	}
	procs := make(map[int]procStat, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // it exited meanwhile
		}
		procs[pid] = st
	}
	return procs, nil
}

// rssKB returns the VmRSS of process pid in kB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseRSS(b)
}

// parseRSS finds the VmRSS line of a /proc/<pid>/status file.
func parseRSS(status []byte) (int64, error) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", line)
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, errors.New("no VmRSS line (a kernel thread or a zombie?)")
}

// hostBusyTicks returns the CPU time the whole machine spent busy (all
// but idle and iowait), from the first line of /proc/stat.
func hostBusyTicks() (int64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseHostBusy(b)
}

func parseHostBusy(stat []byte) (int64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := bytes.Fields(line)
	if len(f) < 5 || string(f[0]) != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		// user nice system idle iowait irq softirq steal guest guest_nice:
		// idle, iowait and steal are not this machine's work, and guest
		// time is already counted in user and nice.
		switch i {
		case 3, 4, 7, 8, 9:
		default:
			busy += n
		}
	}
	return busy, nil
}

// cpuWindow measures the CPU time of the watched processes, and the GC
// pauses of the -metrics ones, between start and stop.
type cpuWindow struct {
	watched []namedPID
	gc      *gcWindow
	self    []namedPID // the benchmark's own processes
	before  map[string]int64
	selfB   map[string]int64
	hostB   int64
	elapsed float64
	after   map[string]int64
	selfA   map[string]int64
	hostA   int64
}

func newCPUWindow(watched []namedPID, self []namedPID, metrics []metricsTarget) *cpuWindow {
	return &cpuWindow{watched: watched, self: self, gc: newGCWindow(metrics)}
}

// sample returns the ticks of the watched processes and of the
// benchmark's own. The trees are summed together, so that a process
// belongs to its nearest watched or own ancestor: servers the benchmark
// started itself (the relay scenario's) count as servers, not as its own.
func (w *cpuWindow) sample() (map[string]int64, map[string]int64, error) {
	procs, err := allStats()
	if err != nil {
		return nil, nil, err
	}
	sums, err := sumTrees(procs, append(slices.Clone(w.watched), w.self...))
	if err != nil {
		return nil, nil, err
	}
	pick := func(ps []namedPID) map[string]int64 {
		m := make(map[string]int64, len(ps))
		for _, p := range ps {
			m[p.name] = sums[p.name]
		}
		return m
	}
	return pick(w.watched), pick(w.self), nil
}

func (w *cpuWindow) start() error {
	var err error
	if err = w.gc.start(); err != nil {
		return err
	}
	w.before, w.selfB, err = w.sample()
	if err == nil {
		w.hostB, err = hostBusyTicks()
	}
	return err
}

func (w *cpuWindow) stop(elapsedSeconds float64) error {
	var err error
	w.elapsed = elapsedSeconds
	w.after, w.selfA, err = w.sample()
	if err == nil {
		w.hostA, err = hostBusyTicks()
	}
	if err == nil {
		err = w.gc.stop()
	}
	return err
}

// cpuReport is the CPU part of a result line.
type cpuReport struct {
	// WindowS is the wall-clock length of the measured window.
	WindowS float64 `json:"window_s"`
	// Seconds is the CPU time used in the window by each process of -pids
	// (with its descendants), and their sum as "total".
	Seconds map[string]float64 `json:"cpu_s"`
	// PerUnitMS is Seconds in milliseconds divided by the units of work
	// done in the window (delivered messages, bound connections,
	// deliveries), per process and "total".
	PerUnitMS map[string]float64 `json:"cpu_ms_per_unit"`
	// Unit names what PerUnitMS divides by.
	Unit string `json:"unit"`
	// Units is how many units of work the window did.
	Units int64 `json:"units"`
	// ClientS is the benchmark's own CPU time in the window (it shares
	// the machine with the servers).
	ClientS float64 `json:"client_cpu_s"`
	// Cores is the share of one CPU the servers used: total / window_s.
	Cores float64 `json:"server_cores"`
	// HostBusyS is the CPU time the whole machine was busy in the window
	// (/proc/stat), and OtherS what of it neither the -pids processes nor
	// the benchmark used: other load that makes the figures unreliable
	// when it is large (also kernel work not charged to a process).
	HostBusyS float64 `json:"host_busy_s"`
	OtherS    float64 `json:"other_cpu_s"`
}

// report turns the two samples into a cpuReport for units of unit.
func (w *cpuWindow) report(unit string, units int64) *cpuReport {
	if w.before == nil || w.after == nil {
		return nil
	}
	r := &cpuReport{
		WindowS:   round3(w.elapsed),
		Seconds:   map[string]float64{},
		PerUnitMS: map[string]float64{},
		Unit:      unit,
		Units:     units,
	}
	var total int64
	for _, p := range w.watched {
		d := w.after[p.name] - w.before[p.name]
		total += d
		r.Seconds[p.name] = round3(float64(d) / clockTicks)
		if units > 0 {
			r.PerUnitMS[p.name] = round4(float64(d) * 1000 / clockTicks / float64(units))
		}
	}
	if len(w.watched) > 0 {
		r.Seconds["total"] = round3(float64(total) / clockTicks)
		if units > 0 {
			r.PerUnitMS["total"] = round4(float64(total) * 1000 / clockTicks / float64(units))
		}
		if w.elapsed > 0 {
			r.Cores = round3(float64(total) / clockTicks / w.elapsed)
		}
	}
	var self int64
	for _, p := range w.self {
		self += w.selfA[p.name] - w.selfB[p.name]
	}
	r.ClientS = round3(float64(self) / clockTicks)
	host := w.hostA - w.hostB
	r.HostBusyS = round3(float64(host) / clockTicks)
	r.OtherS = round3(float64(host-total-self) / clockTicks)
	return r
}
