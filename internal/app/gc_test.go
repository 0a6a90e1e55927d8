package app

import (
	"context"
	"flag"
	"log/slog"
	"testing"
)

func TestParseGOGC(t *testing.T) {
	for v, want := range map[string]int{"off": -1, "50": 50, "400": 400, "": 100, "lots": 100} {
		if got := parseGOGC(v); got != want {
			t.Errorf("parseGOGC(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestMainRefusesNegativeGCFloor: a negative -gc-floor-mib stops the
// program before it runs.
func TestMainRefusesNegativeGCFloor(t *testing.T) {
	ran := false
	err := mainErr(t.Context(), "test", DefaultGOGC, []string{"-gc-floor-mib", "-1"}, func(*flag.FlagSet) {},
		func(context.Context, *slog.Logger) error { ran = true; return nil })
	if err == nil || ran {
		t.Fatalf("mainErr with -gc-floor-mib -1: err %v, ran %v; want an error and no run", err, ran)
	}
}
