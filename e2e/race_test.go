//go:build race

package e2e

// raceEnabled reports whether the test binary runs under the race detector;
// the binaries under test are then built with it too.
const raceEnabled = true
