package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// binDir holds the binaries TestMain built: register, gateway, worker,
// allinone and chatbench.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

// run builds the binaries, runs the tests and checks for leaked goroutines.
func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gatewire-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: create binary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	binDir = dir

	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// build compiles every command of the module into dir, with the race
// detector when the tests run with it. The tests run in the package
// directory, one level below the module root.
func build(dir string) error {
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/register", "./cmd/gateway", "./cmd/worker", "./cmd/allinone", "./cmd/chatbench")
	cmd := exec.Command("go", args...)
	cmd.Dir = ".."
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %v: %v\n%s", args, err, out)
	}
	fmt.Fprintf(os.Stderr, "e2e: built binaries in %v (race=%v)\n", time.Since(start).Round(time.Millisecond), raceEnabled)
	return nil
}
