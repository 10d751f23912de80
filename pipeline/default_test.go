package pipeline_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/internal/loggen"
)

// TestDefaultConfigStopsEachKindOfBomb: in the logs of each MTA, on a
// small site and on a relay taking 100 messages a second, the built-in
// config blocks every bomb the generator plants — each by the rules of its
// kind — and no other key; it says how long each took and how many of the
// bomb's messages were logged before the block.
func TestDefaultConfigStopsEachKindOfBomb(t *testing.T) {
	// Enough lines for a set of bombs with the site's traffic around it:
	// one set, of about 20 minutes.
	lines := map[string]map[string]int{
		"small": {"postfix": 40000, "sendmail": 20000, "qmail": 20000},
		"large": {"postfix": 700000, "sendmail": 330000, "qmail": 480000},
	}
	for _, site := range loggen.Sites {
		for _, format := range loggen.Formats {
			t.Run(site+"/"+format, func(t *testing.T) {
				var buf bytes.Buffer
				bombs, err := loggen.Write(&buf, loggen.Options{Format: format, Site: site, Lines: lines[site][format], Seed: 14, BombEvery: 1 << 30})
				if err != nil {
					t.Fatal(err)
				}
				log := filepath.Join(t.TempDir(), format+".log")
				if err := os.WriteFile(log, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				got, _ := replay(t, config.Default(), nil, nil, log)
				blocked := map[string]time.Time{} // rule and key → first block
				for _, d := range got {
					if k := d.Rule + " " + d.Key; d.Event == "block" && blocked[k].IsZero() {
						blocked[k] = d.Time
					}
				}
				kinds := map[string]bool{}
				for _, b := range bombs {
					kinds[b.Kind] = true
					for _, rule := range b.Rules {
						k := rule + " " + b.Key
						at, ok := blocked[k]
						if !ok {
							t.Errorf("%s bomb %s not blocked by %s", b.Kind, b.Key, rule)
							continue
						}
						delete(blocked, k)
						through := 0
						for _, e := range b.Times {
							if !e.After(at) {
								through++
							}
						}
						if through == len(b.Times) {
							t.Errorf("%s bomb %s blocked by %s only after its last event", b.Kind, b.Key, rule)
						}
						t.Logf("%-14s %-13s blocked after %-7s %3d of %d events through", b.Kind, rule, at.Sub(b.Times[0]).Round(time.Second), through, len(b.Times))
					}
				}
				for k := range blocked {
					t.Errorf("blocked %q, which is no bomb", k)
				}
				// What each log can show: qmail-send's has no client or
				// account, sendmail's no uid.
				want := len(loggen.Kinds)
				switch format {
				case "qmail":
					want = 4
				case "sendmail":
					want--
				}
				if len(kinds) != want {
					t.Errorf("%d kinds of bomb planted, want %d", len(kinds), want)
				}
			})
		}
	}
}
