package actions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Script runs a program for each block (Command) and, if set, each unblock
// (UnblockCommand). The command is an argv list executed directly, never
// through a shell. Placeholders — {event} {rule} {key} {key_type} {value}
// {limit} {window} {until} {time} {reason} — are replaced inside each argument in one pass,
// so a key such as `"$(reboot);x"@evil.example` reaches the program as one
// plain argument and a key holding "{rule}" is not expanded again. The same
// values are in the environment as BOMBWATCH_EVENT, BOMBWATCH_RULE, ….
type Script struct {
	ActionName     string
	Command        []string
	UnblockCommand []string
	Timeout        time.Duration // the program is killed (with its children) after it
	// Concurrency caps the runs of this script at once (0: no cap of its
	// own; the Executor's still applies).
	Concurrency int
	DryRunOnly  bool
	// Launcher, when set, runs the program: bombwatch's hook-exec, which
	// clears the ambient capabilities a hook would otherwise inherit (see
	// HookLauncher).
	Launcher []string
	Retries
	Logger *slog.Logger

	once sync.Once
	sem  chan struct{}
}

func (s *Script) Name() string   { return s.ActionName }
func (s *Script) External() bool { return true }
func (s *Script) DryRun() bool   { return s.DryRunOnly }

// maxOutput bounds what is kept of a program's output for the log.
const maxOutput = 4 << 10

func (s *Script) Run(ctx context.Context, d Detection) error {
	argv := s.Command
	if d.Event == "unblock" {
		argv = s.UnblockCommand
	}
	if len(argv) == 0 {
		return nil
	}
	if s.Concurrency > 0 { // the Executor keeps to it (Cap); others may call Run too
		s.once.Do(func() { s.sem = make(chan struct{}, s.Concurrency) })
		s.sem <- struct{}{}
		defer func() { <-s.sem }()
	}
	values := placeholders(d)
	pairs := make([]string, 0, 2*len(values))
	env := os.Environ()
	for _, v := range values {
		pairs = append(pairs, "{"+v[0]+"}", v[1])
		env = append(env, "BOMBWATCH_"+strings.ToUpper(v[0])+"="+v[1])
	}
	r := strings.NewReplacer(pairs...)
	args := make([]string, len(argv))
	for i, a := range argv {
		args[i] = r.Replace(a)
	}

	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if len(s.Launcher) > 0 {
		args = append(slices.Clone(s.Launcher), args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = env
	// The detection as JSON on standard input, for hooks that want it all.
	js, _ := json.Marshal(struct {
		Event   string  `json:"event"`
		Time    string  `json:"time"`
		Rule    string  `json:"rule"`
		KeyType string  `json:"key_type"`
		Key     string  `json:"key"`
		Value   float64 `json:"value"`
		Limit   float64 `json:"limit"`
		Window  string  `json:"window"`
		Until   string  `json:"until,omitempty"`
		Reason  string  `json:"reason,omitempty"`
	}{d.Event, d.Time.UTC().Format(time.RFC3339Nano), d.Rule, d.KeyType, d.Key, d.Value, d.Limit, d.Window.String(), values[7][1], d.Reason})
	cmd.Stdin = bytes.NewReader(append(js, '\n'))
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own process group, so that a timeout kills what it started too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// A grandchild holding the output pipe must not hold us past the kill.
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	logger := s.Logger
	if logger == nil {
		logger = slog.Default()
	}
	status := -1
	if cmd.ProcessState != nil {
		status = cmd.ProcessState.ExitCode()
	}
	logger.Info("script", "action", s.ActionName, "event", d.Event, "program", args[0], "exit", status,
		"elapsed", time.Since(start).Round(time.Millisecond).String(), "output", strings.TrimSpace(out.String()))
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: killed after %s", args[0], timeout)
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return fmt.Errorf("%s: exit status %d", args[0], exitErr.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

func placeholders(d Detection) [][2]string {
	until := ""
	if !d.Until.IsZero() {
		until = d.Until.UTC().Format(time.RFC3339)
	}
	return [][2]string{
		{"event", d.Event},
		{"rule", d.Rule},
		{"key", d.Key},
		{"key_type", d.KeyType},
		{"value", FormatNumber(d.Value)},
		{"limit", FormatNumber(d.Limit)},
		{"window", d.Window.String()},
		{"until", until},
		{"time", d.Time.UTC().Format(time.RFC3339Nano)},
		{"reason", d.Reason},
	}
}

// limitedBuffer keeps the first maxOutput bytes written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// HookLauncher returns the launcher hooks need, nil when none: a daemon
// given ambient capabilities (the packaged unit's CAP_NET_ADMIN, which nft
// and iptables need) would pass them on to every hook, so hooks run
// through "bombwatch hook-exec --", which clears them first.
func HookLauncher() []string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "CapAmb:"); ok && strings.Trim(strings.TrimSpace(v), "0") != "" {
			if exe, err := os.Executable(); err == nil {
				return []string{exe, "hook-exec", "--"}
			}
		}
	}
	return nil
}

// Cap is the script's `concurrency`: the Executor runs no more at once.
func (s *Script) Cap() int { return s.Concurrency }
