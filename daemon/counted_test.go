package daemon

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/sqlite"
	"github.com/bombwatch/bombwatch/state"
)

// TestDeferredRetryAfterRestart: a deferred message whose first "from="
// line is more than the megabyte read again at a restart behind the saved
// position is counted once, not again at its retry after the restart.
func TestDeferredRetryAfterRestart(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	db := filepath.Join(dir, "state.db")
	yaml := fmt.Sprintf("state: %s\ninputs: [{path: %s, poll: 20ms, start: beginning}]\nrules:\n  - {name: m, on: [accepted], key: sender, limit: 1000, per: 1h}\n", db, log)
	var b bytes.Buffer
	b.WriteString("2026-11-20T10:00:00Z mx postfix/smtpd[1]: 4DEFE11ED: client=c.example[192.0.2.1]\n")
	b.WriteString("2026-11-20T10:00:01Z mx postfix/qmgr[2]: 4DEFE11ED: from=<deferred@example.org>, size=100, nrcpt=1 (queue active)\n")
	for i := 0; b.Len() < 1300<<10; i++ { // more than the megabyte read again
		fmt.Fprintf(&b, "2026-11-20T10:%02d:%02dZ mx postfix/qmgr[2]: 7F%08X: from=<other%d@example.org>, size=100, nrcpt=1 (queue active)\n", 1+i/3000%50, i%60, i, i)
		fmt.Fprintf(&b, "2026-11-20T10:%02d:%02dZ mx postfix/qmgr[2]: 7F%08X: removed\n", 1+i/3000%50, i%60, i)
	}
	os.WriteFile(log, b.Bytes(), 0o644)
	run := func() {
		_, stop := runInProcess(t, yaml)
		size := int64(len(b.Bytes()))
		for deadline := time.Now().Add(20 * time.Second); ; {
			s, err := sqlite.Open(db)
			if err == nil {
				snap, _ := s.Load()
				s.Close()
				if snap != nil && snap.Positions[log].Offset == size {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the log was not read")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	run()
	b.WriteString("2026-11-20T11:00:00Z mx postfix/qmgr[2]: 4DEFE11ED: from=<deferred@example.org>, size=100, nrcpt=1 (queue active)\n")
	os.WriteFile(log, b.Bytes(), 0o644)
	run()
	s, err := sqlite.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int64
	s.Stats(0, 1<<40, func(st *state.Stat) {
		if st.KeyType == "sender" && st.Key == "deferred@example.org" {
			n += st.Messages
		}
	})
	if n != 1 {
		t.Errorf("the deferred message counted %d times, want 1", n)
	}
}
