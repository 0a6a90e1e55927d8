package app

import "testing"

func TestParseGOGC(t *testing.T) {
	for v, want := range map[string]int{"off": -1, "50": 50, "400": 400, "": 100, "lots": 100} {
		if got := parseGOGC(v); got != want {
			t.Errorf("parseGOGC(%q) = %d, want %d", v, got, want)
		}
	}
}

func TestStartGCRefusesNegativeFloor(t *testing.T) {
	if _, err := startGC(ProcessConfig{GCFloorMiB: -1}, 100); err == nil {
		t.Fatal("startGC accepted -gc-floor-mib -1")
	}
}
