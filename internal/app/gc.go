package app

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/gatewire/gatewire/internal/gcfloor"
)

// DefaultGOGC is the GOGC of a process that sets none of its own (Go's).
const DefaultGOGC = 100

// defaultGCFloorMiB: a busy worker or gateway holds a few MiB live, so at
// GOGC it collected several times a second; with 32 MiB of room the chat
// benchmark's workers spent ~8% and its gateways ~4% less CPU per message
// (bench/HISTORY.md), for at most that much more memory per process.
const defaultGCFloorMiB = 32

// GCFlags registers -gc-floor-mib, a setting of the whole process like the
// log flags, and returns a function that applies it to a process whose
// GOGC is def unless the environment sets one (package gcfloor); the
// function returns what undoes it.
func GCFlags(fs *flag.FlagSet) func(def int) (stop func(), err error) {
	floor := fs.Int("gc-floor-mib", defaultGCFloorMiB, "MiB the heap may grow between garbage collections however small it is; a large heap grows by GOGC percent (0: GOGC alone)")
	return func(def int) (func(), error) {
		if *floor < 0 {
			return nil, fmt.Errorf("-gc-floor-mib: want 0 or more, got %d", *floor)
		}
		base := def
		if v, ok := os.LookupEnv("GOGC"); ok {
			base = parseGOGC(v)
		}
		return gcfloor.Start(base, uint64(*floor)<<20), nil
	}
}

// parseGOGC reads GOGC as the runtime does: "off" is -1, and what is not a
// number is the default 100.
func parseGOGC(v string) int {
	if v == "off" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return DefaultGOGC
	}
	return n
}
