package e2e

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill cmd's process if the test binary
// dies before its cleanups run (a panic or a -timeout), so that no process
// outlives the test.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
