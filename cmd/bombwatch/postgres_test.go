package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bombwatch/bombwatch/internal/pgtest"
)

// TestPostgreSQLStateAnswersAsSQLite: replay --db with a PostgreSQL DSN,
// then bans list, report and a second replay (which resumes, reading
// nothing again) say what they say with the embedded SQLite file.
func TestPostgreSQLStateAnswersAsSQLite(t *testing.T) {
	dsn := pgtest.Start(t).NewDatabase(t)
	file := filepath.Join(t.TempDir(), "state.db")
	logs := []string{"../../samples/postfix.log", "../../samples/sendmail.log"}
	for _, db := range []string{dsn, file} {
		if code, _, errOut := bombwatch(t, append([]string{"replay", "--db", db}, logs...)...); code != 0 {
			t.Fatalf("replay --db %s: %d %s", db, code, errOut)
		}
	}
	// The report of a shared state names its host; all else is alike.
	hosts := map[string]any{}
	answers := func(db string) []string {
		var out []string
		for _, args := range [][]string{
			{"bans", "list", "--json", "--db", db},
			{"report", "--format", "json", "--since", "30d", "--db", db},
			append([]string{"replay", "--json", "--db", db}, logs...),
		} {
			code, stdout, errOut := bombwatch(t, args...)
			if code != 0 {
				t.Fatalf("%v: %d %s", args, code, errOut)
			}
			if args[0] == "report" {
				var r map[string]any
				if err := json.Unmarshal([]byte(stdout), &r); err != nil {
					t.Fatal(err)
				}
				hosts[db] = r["hosts"]
				delete(r, "hosts")
				b, _ := json.Marshal(r)
				stdout = string(b)
			}
			out = append(out, stdout)
		}
		return out
	}
	pg, lite := answers(dsn), answers(file)
	if h, _ := hosts[dsn].([]any); len(h) != 1 || hosts[file] != nil {
		t.Errorf("hosts named: PostgreSQL %v, SQLite %v; want this host, and none", hosts[dsn], hosts[file])
	}
	for i := range pg {
		if pg[i] != lite[i] {
			t.Errorf("answer %d differs:\nPostgreSQL %s\nSQLite     %s", i, pg[i], lite[i])
		}
	}
	if !strings.Contains(pg[0], `"rule"`) {
		t.Errorf("no block in force after the samples: %s", pg[0])
	}
}

// TestHostSaysWhereTheCrossingWasSeen: a detection's and a block's host is
// the logging host of the line that crossed the limit, or host: when the
// line names none (multilog's lines).
func TestHostSaysWhereTheCrossingWasSeen(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bombwatch.yaml")
	if err := os.WriteFile(cfg, []byte("host: mxq.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "state.db")
	for _, tt := range []struct{ log, host string }{
		{"../../samples/postfix.log", "mx1"},
		{"../../samples/qmail.log", "mxq.example.org"},
	} {
		code, stdout, errOut := bombwatch(t, "replay", "-c", cfg, "--json", "--db", db, tt.log)
		if code != 0 {
			t.Fatalf("replay %s: %d %s", tt.log, code, errOut)
		}
		blocks := 0
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var d struct{ Event, Host string }
			if err := json.Unmarshal([]byte(line), &d); err != nil {
				t.Fatal(err)
			}
			if d.Event == "block" {
				blocks++
				if d.Host != tt.host {
					t.Errorf("%s: a detection's host is %q, want %q: %s", tt.log, d.Host, tt.host, line)
				}
			}
		}
		if blocks == 0 {
			t.Errorf("%s: no block", tt.log)
		}
		// The blocks in force at the end of the log, as saved.
		_, list, _ := bombwatch(t, "bans", "list", "--json", "--db", db)
		if !strings.Contains(list, `"host":"`+tt.host+`"`) {
			t.Errorf("%s: bans list --json does not say host %s: %.300s", tt.log, tt.host, list)
		}
	}
}
