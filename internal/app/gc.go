package app

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/gatewire/gatewire/internal/gcfloor"
)

// ProcessConfig holds the settings of a process's Go runtime.
type ProcessConfig struct {
	// GCFloorMiB is how many MiB the heap may grow between garbage
	// collections however small it is (package gcfloor); zero leaves GOGC
	// alone.
	GCFloorMiB int
}

// defaultGCFloorMiB: a busy worker or gateway holds a few MiB live, so at
// GOGC it collected several times a second; with 32 MiB of room the chat
// benchmark's workers spent ~8% and its gateways ~4% less CPU per message
// (README, Performance), for at most that much more memory per process.
const defaultGCFloorMiB = 32

func processFlags(fs *flag.FlagSet, p *ProcessConfig) {
	fs.IntVar(&p.GCFloorMiB, "gc-floor-mib", defaultGCFloorMiB, "MiB the heap may grow between garbage collections however small it is; a large heap grows by GOGC percent (0: GOGC alone)")
}

// startGC applies p to a process whose GOGC is def unless the environment
// sets one; stop undoes it. One per process: the GC percent is global.
func startGC(p ProcessConfig, def int) (stop func(), err error) {
	if p.GCFloorMiB < 0 {
		return nil, fmt.Errorf("-gc-floor-mib: want 0 or more, got %d", p.GCFloorMiB)
	}
	base := def
	if v, ok := os.LookupEnv("GOGC"); ok {
		base = parseGOGC(v)
	}
	return gcfloor.Start(base, uint64(p.GCFloorMiB)<<20), nil
}

// parseGOGC reads GOGC as the runtime does: "off" is -1, and what is not a
// number is the default 100.
func parseGOGC(v string) int {
	if v == "off" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 100
	}
	return n
}
