package gcfloor

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name           string
		base           int
		floor, scanned uint64
		want           int
	}{
		{"large heap keeps the base", 50, 32 * mib, 200 * mib, 50},
		{"small heap grows by the floor", 50, 32 * mib, 8 * mib, 400},
		{"rounds up", 100, 32 * mib, 24 * mib, 134},
		{"tiny heap: the runtime's minimum goal is the floor", 100, 32 * mib, 2 * mib, 850},
		{"floor below the runtime's minimum changes nothing", 100, 1 * mib, 1 * mib, 100},
		{"empty heap is capped", 100, 1 << 40, 0, maxPercent},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Percent(c.base, c.floor, c.scanned); got != c.want {
				t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.base, c.floor, c.scanned, got, c.want)
			}
		})
	}
}

// gcPercent reads the percent in force.
func gcPercent(t *testing.T) int64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestStartFollowsCollections checks that a collection of this test's small
// heap raises the percent above the base, and that stop restores the base.
func TestStartFollowsCollections(t *testing.T) {
	stop := Start(100, 256<<20)
	runtime.GC()
	deadline := time.Now().Add(10 * time.Second)
	for gcPercent(t) <= 100 {
		if time.Now().After(deadline) {
			t.Fatalf("GC percent still %d after a collection; want it raised for a %d MiB floor", gcPercent(t), 256)
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	stop() // idempotent
	if p := gcPercent(t); p != 100 {
		t.Errorf("after stop: GC percent %d, want the base 100", p)
	}
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	if p := gcPercent(t); p != 100 {
		t.Errorf("a collection after stop set the GC percent to %d", p)
	}
}

func TestStartWithoutFloorSetsBase(t *testing.T) {
	stop := Start(70, 0)
	defer Start(100, 0)
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if p := gcPercent(t); p != 70 {
		t.Errorf("GC percent %d, want 70", p)
	}
	stop()
}
