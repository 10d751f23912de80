package main

import (
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
			out = append(out, stdout)
		}
		return out
	}
	pg, lite := answers(dsn), answers(file)
	for i := range pg {
		if pg[i] != lite[i] {
			t.Errorf("answer %d differs:\nPostgreSQL %s\nSQLite     %s", i, pg[i], lite[i])
		}
	}
	if !strings.Contains(pg[0], `"rule"`) {
		t.Errorf("no block in force after the samples: %s", pg[0])
	}
}
