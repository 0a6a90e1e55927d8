//go:build !linux

package e2e

import "os/exec"

// setDeathSignal does nothing here: only Linux kills a child when its parent
// dies; the tests' cleanups stop every process they started.
func setDeathSignal(*exec.Cmd) {}
