package actions

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func detection(key string) Detection {
	return Detection{Event: "block", Time: t0, BlockID: 7, Rule: "sender-flood", KeyType: "sender", Key: key,
		Value: 11, Limit: 10, Window: time.Minute, Until: t0.Add(time.Hour)}
}

func TestScriptHostileKeyIsOneArgument(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	recorder, _ := filepath.Abs("testdata/record.sh")
	canary := filepath.Join(t.TempDir(), "canary")
	hostile := []string{
		`"$(reboot);x"@evil.example`,
		`a b'c"d;touch ` + canary + `;@x`,
		"line\nbreak@x",
		"{rule}@x", // not expanded a second time
	}
	for _, key := range hostile {
		s := &Script{ActionName: "hook", Command: []string{recorder, out, "{rule}", "{key}", "key={key}", "{limit}", "{until}"}, Timeout: 5 * time.Second}
		if err := s.Run(t.Context(), detection(key)); err != nil {
			t.Fatalf("key %q: %v", key, err)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want := "arg:sender-flood\narg:" + key + "\narg:key=" + key + "\narg:10\narg:2026-11-20T11:00:00Z\n"
		if !strings.HasPrefix(string(got), want) {
			t.Errorf("key %q: script saw\n%s\nwant prefix\n%s", key, got, want)
		}
		if !strings.Contains(string(got), "BOMBWATCH_RULE=sender-flood\n") || !strings.Contains(string(got), "BOMBWATCH_KEY_TYPE=sender\n") {
			t.Errorf("key %q: environment missing in\n%s", key, got)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Error("a key's shell syntax was executed")
	}
}

func TestScriptTimeoutKills(t *testing.T) {
	// The program starts a child that would outlive it: the whole group dies.
	s := &Script{ActionName: "slow", Command: []string{"/bin/sh", "-c", "sleep 30 & sleep 30"}, Timeout: 200 * time.Millisecond}
	start := time.Now()
	err := s.Run(t.Context(), detection("a@x"))
	if err == nil || !strings.Contains(err.Error(), "killed after") {
		t.Errorf("err = %v, want a kill", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %v after a 200ms timeout", elapsed)
	}
}

func TestScriptExitStatusAndOutputAreLogged(t *testing.T) {
	var buf bytes.Buffer
	s := &Script{ActionName: "hook", Command: []string{"/bin/sh", "-c", "echo oops; exit 3"}, Logger: slog.New(slog.NewTextHandler(&buf, nil))}
	err := s.Run(t.Context(), detection("a@x"))
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(buf.String(), "exit=3") || !strings.Contains(buf.String(), "output=oops") {
		t.Errorf("log = %s", buf.String())
	}
	if err := (&Script{ActionName: "x", Command: []string{"/nonexistent/program"}}).Run(t.Context(), detection("a")); err == nil {
		t.Error("a missing program did not fail")
	}
}

func TestExecutor(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	record := func(id int64, action, status string) {
		mu.Lock()
		defer mu.Unlock()
		got[action] = status
	}
	var logs bytes.Buffer
	acts := []Action{
		&Log{Logger: slog.New(slog.NewTextHandler(&logs, nil))},
		&Script{ActionName: "ok", Command: []string{"/bin/true"}},
		&Script{ActionName: "bad", Command: []string{"/bin/false"}},
		&Script{ActionName: "dry", Command: []string{"/bin/true"}, DryRunOnly: true},
	}
	x := &Executor{Act: true, Record: record, Log: slog.New(slog.NewTextHandler(&logs, nil)), Backoff: time.Millisecond}
	if !x.Dispatch(detection("a@x"), acts) {
		t.Error("Dispatch with Act reported not executed")
	}
	x.Wait()
	want := map[string]string{"log": StatusApplied, "ok": StatusApplied, "bad": StatusFailed, "dry": StatusDryRun}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(logs.String(), "msg=block rule=sender-flood key_type=sender key=a@x value=11 limit=10") {
		t.Errorf("log line: %s", logs.String())
	}

	clear(got)
	x = &Executor{Act: false, Record: record}
	if x.Dispatch(detection("a@x"), acts[1:2]) {
		t.Error("Dispatch without Act reported executed")
	}
	x.Wait()
	if got["ok"] != StatusDryRun {
		t.Errorf("without Act: %v", got)
	}
}

// countingAction fails every run with err and counts the runs.
type countingAction struct {
	mu   sync.Mutex
	runs int
	err  error
}

func (c *countingAction) Name() string   { return "counting" }
func (c *countingAction) External() bool { return true }
func (c *countingAction) Run(context.Context, Detection) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs++
	return c.err
}

// TestExecutorDoesNotRetryARefusal: the Guard's no stays a no, so it is
// tried once; an ordinary failure is retried.
func TestExecutorDoesNotRetryARefusal(t *testing.T) {
	for _, c := range []struct {
		err  error
		runs int
	}{{refuse("never"), 1}, {errors.New("busy"), 3}} {
		a := &countingAction{err: c.err}
		x := &Executor{Act: true, Log: slog.New(slog.DiscardHandler), Backoff: time.Millisecond, Retries: 2}
		x.Dispatch(detection("a@x"), []Action{a})
		x.Wait()
		if a.runs != c.runs {
			t.Errorf("%v: %d runs, want %d", c.err, a.runs, c.runs)
		}
	}
}
