package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/internal/netns"
	"github.com/bombwatch/bombwatch/pipeline"
)

// runInProcess runs the daemon in this process, so that the race detector
// sees its goroutines, and returns a way to stop it.
func runInProcess(t *testing.T, yaml string) (detections func() []pipeline.Detection, stop func() error) {
	t.Helper()
	return runWithMetrics(t, yaml, NewMetrics())
}

// runWithMetrics is runInProcess counting into m.
func runWithMetrics(t *testing.T, yaml string, m *Metrics) (detections func() []pipeline.Detection, stop func() error) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []pipeline.Detection
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Metrics: m,
			Load:    func() (*config.Config, error) { return cfg, nil },
			Logger:  slog.New(slog.DiscardHandler),
			Now:     time.Now,
			Ready:   ready,
			OnDetection: func(d pipeline.Detection) {
				mu.Lock()
				got = append(got, d)
				mu.Unlock()
			},
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	return func() []pipeline.Detection {
			mu.Lock()
			defer mu.Unlock()
			return append([]pipeline.Detection(nil), got...)
		}, func() error {
			cancel()
			return <-done
		}
}

func TestRunInProcess(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	glob := filepath.Join(dir, "other-*.log")
	os.WriteFile(log, nil, 0o644)
	detections, stop := runInProcess(t, fmt.Sprintf(`
state: %s
inputs:
  - {path: %s, poll: 20ms}
  - {path: %q, poll: 20ms}
rules:
  - {name: s, on: [accepted], key: sender, limit: 2, per: 1m, block: 1s}
`, filepath.Join(dir, "state.db"), log, glob))
	write := func(path, sender string, n int) {
		f, _ := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		for i := range n {
			fmt.Fprintf(f, "%s mx postfix/qmgr[1]: %sQ%04d: from=<%s>, size=1, nrcpt=1 (queue active)\n",
				time.Now().UTC().Format(time.RFC3339Nano), strings.ToUpper(sender[:1]), i, sender)
		}
		f.Close()
	}
	write(log, "a@example.org", 3)
	write(filepath.Join(dir, "other-1.log"), "b@example.org", 3) // a file the glob finds later
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var keys []string
		for _, d := range detections() {
			keys = append(keys, d.Event+" "+d.Key)
		}
		s := strings.Join(keys, ",")
		// Blocked, and lifted by the wall clock after a second.
		if strings.Contains(s, "unblock a@example.org") && strings.Contains(s, "unblock b@example.org") {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	t.Fatalf("detections: %+v", detections())
}

// TestJournald follows a journalctl — here a script printing what
// `journalctl -f -o json` prints — and resumes after its cursor.
func TestJournald(t *testing.T) {
	dir := t.TempDir()
	args := filepath.Join(dir, "args")
	fake := filepath.Join(dir, "journalctl")
	var entries strings.Builder
	for i := range 3 {
		fmt.Fprintf(&entries, `{"__CURSOR":"s=abc;i=%d","__REALTIME_TIMESTAMP":"%d","_HOSTNAME":"mx","SYSLOG_IDENTIFIER":"postfix/qmgr","_PID":"9","MESSAGE":"JRNL%05d: from=<j@example.org>, size=1, nrcpt=1 (queue active)"}`+"\n",
			i, time.Now().UnixMicro(), i)
	}
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"$@\" >> "+args+"\ncat <<'EOF'\n"+entries.String()+"EOF\nexec sleep 30\n"), 0o755)
	t.Setenv("BOMBWATCH_JOURNALCTL", fake)
	yaml := fmt.Sprintf(`
state: %s
inputs:
  - {path: journald, units: [postfix@-.service], identifiers: [postfix/qmgr]}
rules:
  - {name: j, on: [accepted], key: sender, limit: 2, per: 1m}
`, filepath.Join(dir, "state.db"))
	detections, stop := runInProcess(t, yaml)
	deadline := time.Now().Add(5 * time.Second)
	for len(detections()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ds := detections(); len(ds) != 1 || ds[0].Key != "j@example.org" {
		t.Fatalf("detections %+v", ds)
	}
	// Started again, it asks journalctl for what came after the cursor.
	_, stop = runInProcess(t, yaml)
	time.Sleep(300 * time.Millisecond)
	stop()
	got, _ := os.ReadFile(args)
	calls := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(calls) < 2 || !strings.Contains(calls[0], "-n 0") || !strings.Contains(calls[0], "-u postfix@-.service") ||
		!strings.Contains(calls[0], "SYSLOG_IDENTIFIER=postfix/qmgr") || !strings.Contains(calls[len(calls)-1], "--after-cursor=s=abc;i=2") {
		t.Errorf("journalctl was called with\n%s", got)
	}
}

// TestMetrics serves /metrics and /healthz, with what a run counted.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, nil, 0o644)
	metrics := NewMetrics()
	detections, stop := runWithMetrics(t, fmt.Sprintf("state: %s\ninputs: [{path: %s, poll: 20ms}]\nrules:\n  - {name: m, on: [accepted], key: sender, limit: 1, per: 1m}\n",
		filepath.Join(dir, "state.db"), log), metrics)
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	for i := range 2 {
		fmt.Fprintf(f, "%s mx postfix/qmgr[1]: METQ%04d: from=<m@example.org>, size=1, nrcpt=1 (queue active)\n", time.Now().UTC().Format(time.RFC3339Nano), i)
	}
	f.Close()
	for deadline := time.Now().Add(5 * time.Second); len(detections()) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1100 * time.Millisecond) // a tick: the active gauge
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go metrics.Serve(ctx, ln, slog.New(slog.DiscardHandler))
	get := func(path string) string {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get("/healthz"); got != "ok\n" {
		t.Errorf("/healthz: %q", got)
	}
	m := get("/metrics")
	for _, want := range []string{
		`bombwatch_lines_read_total{input="` + log + `"} 2`,
		`bombwatch_events_total{kind="accepted"}`,
		`bombwatch_detections_total{event="block",rule="m"} 1`,
		`bombwatch_blocks_active{rule="m"} 1`,
		`bombwatch_sqlite_commit_seconds_count`,
		`bombwatch_input_lag_seconds{input="` + log + `"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	stop()
}

// TestNFTRestore: a block applied to nftables by the daemon is in the set;
// after a restart that finds the table gone (a reboot), it is applied again
// for the time it has left; a block that expired while bombwatch was down
// is lifted.
func TestNFTRestore(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	os.WriteFile(log, nil, 0o644)
	yaml := fmt.Sprintf(`
state: %s
inputs: [{path: %s, poll: 20ms}]
rules:
  - {name: c, on: [accepted], key: client_ip, limit: 2, per: 1m, block: 1h, actions: [log, fw]}
  - {name: short, on: [accepted], key: client_net, prefix: {ipv4: 24, ipv6: 48}, limit: 5, per: 1m, block: 2s, actions: [fw], enforce: network}
actions:
  fw: {type: nft}
`, filepath.Join(dir, "state.db"), log)
	detections, stop := runInProcess(t, yaml)
	f, _ := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	for i := range 6 {
		fmt.Fprintf(f, "%s mx postfix/smtpd[1]: NFTQ%04d: client=c.example[192.0.2.%d]\n", time.Now().UTC().Format(time.RFC3339Nano), i, 7+i/3*10)
		fmt.Fprintf(f, "%s mx postfix/qmgr[2]: NFTQ%04d: from=<n%d@example.org>, size=1, nrcpt=1 (queue active)\n", time.Now().UTC().Format(time.RFC3339Nano), i, i)
	}
	f.Close()
	list := func(set string) string {
		out, _ := exec.Command("nft", "list", "set", "inet", "bombwatch", set).CombinedOutput()
		return string(out)
	}
	// The address is blocked at the third event, its network at the
	// sixth: both are waited for.
	deadline := time.Now().Add(5 * time.Second)
	for !(strings.Contains(list("a4"), "192.0.2.7") && strings.Contains(list("n4_24"), "192.0.2.0/24")) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := list("a4"); !strings.Contains(s, "192.0.2.7 timeout 1h") {
		t.Fatalf("a4 after the bomb:\n%s\ndetections %+v", s, detections())
	}
	if s := list("n4_24"); !strings.Contains(s, "192.0.2.0/24") {
		t.Fatalf("n4_24 after the bomb:\n%s", s)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	exec.Command("nft", "delete", "table", "inet", "bombwatch").Run() // a reboot
	time.Sleep(2500 * time.Millisecond)                               // the short block expires while down

	detections, stop = runInProcess(t, yaml)
	defer stop()
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(list("a4"), "192.0.2.7") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := list("a4"); !strings.Contains(s, "192.0.2.7 timeout 59m") {
		t.Errorf("a4 after the restart: %s (want the time left, just under an hour)", s)
	}
	if s := list("n4_24"); strings.Contains(s, "192.0.2.0/24") {
		t.Errorf("the expired block is back:\n%s", s)
	}
	var lifted bool
	for _, d := range detections() {
		lifted = lifted || d.Event == "unblock" && d.Key == "192.0.2.0/24" && d.Reason == "expired"
	}
	if !lifted {
		t.Errorf("the block that expired while down was not lifted: %+v", detections())
	}
}
