package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// helper is a chatbench process that another starts to do part of a
// scenario (a hidden scenario: childScenarios). It reports on stdout, a
// line at a time, and exits when its stdin closes.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string   // its stdout's lines; closed at EOF
	exited chan struct{} // closed once it has exited
	once   sync.Once
}

// helperStopGrace is how long a helper may take to exit once its stdin
// closes before it is killed.
const helperStopGrace = 30 * time.Second

// startHelper starts this executable with args; env, unless nil, is its
// environment. Its stderr is ours.
func startHelper(env []string, args ...string) (*helper, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &helper{cmd: cmd, stdin: stdin, lines: make(chan string, 4), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
		_ = cmd.Wait() // only once stdout is drained: Wait closes the pipe
		close(h.exited)
	}()
	return h, nil
}

// next returns the helper's next line.
func (h *helper) next(ctx context.Context) (string, error) {
	select {
	case line, ok := <-h.lines:
		if ok {
			return line, nil
		}
		<-h.exited
		return "", fmt.Errorf("helper pid %d exited (%v)", h.cmd.Process.Pid, h.cmd.ProcessState)
	case <-ctx.Done():
		return "", fmt.Errorf("helper pid %d: %w", h.cmd.Process.Pid, ctx.Err())
	}
}

// nextWithin is next with a timeout.
func (h *helper) nextWithin(timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return h.next(ctx)
}

// expect waits for a line starting with prefix and returns the rest of it.
func (h *helper) expect(ctx context.Context, prefix string) (string, error) {
	line, err := h.next(ctx)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(line, prefix)
	if !ok {
		return "", fmt.Errorf("helper pid %d said %q, want %q", h.cmd.Process.Pid, line, prefix+"...")
	}
	return rest, nil
}

// stop closes the helper's stdin, which makes it exit, and waits for it;
// a helper still there after helperStopGrace is killed.
func (h *helper) stop() {
	h.once.Do(func() {
		_ = h.stdin.Close()
		t := time.AfterFunc(helperStopGrace, func() { _ = h.cmd.Process.Kill() })
		defer t.Stop()
		for range h.lines { // what it says on the way out goes unread
		}
		<-h.exited
	})
}

// untilStdinCloses is how a helper ends: it returns nil once its stdin
// closes (the parent is done with it), or the first error from failed.
func untilStdinCloses(failed <-chan error) error {
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(closed)
	}()
	select {
	case <-closed:
		return nil
	case err := <-failed:
		return err
	}
}
