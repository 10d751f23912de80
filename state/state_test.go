package state_test

import (
	"testing"

	"github.com/bombwatch/bombwatch/state"
	"github.com/bombwatch/bombwatch/state/statetest"
)

// TestMemoryConforms: the memory store keeps the state.Store contract.
func TestMemoryConforms(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store { return state.NewMemory() })
}

// TestOpen: a DSN names its store; an unknown one is an error that says
// which stores there are, without the password.
func TestOpen(t *testing.T) {
	for _, tt := range []struct{ dsn, scheme, rest string }{
		{"/var/lib/bombwatch/state.db", "sqlite", "/var/lib/bombwatch/state.db"},
		{"sqlite:/tmp/s.db", "sqlite", "/tmp/s.db"},
		{"memory:", "memory", ""},
		{"postgres://u:pw@db/bw", "postgres", "postgres://u:pw@db/bw"},
		{"postgresql://db/bw", "postgres", "postgresql://db/bw"},
	} {
		if s, r := state.Scheme(tt.dsn); s != tt.scheme || r != tt.rest {
			t.Errorf("Scheme(%q) = %q, %q", tt.dsn, s, r)
		}
	}
	if s, err := state.Open("memory:", state.OpenOptions{}); err != nil || s == nil {
		t.Errorf("memory: %v", err)
	}
	_, err := state.Open("postgres://u:secret@db/bw", state.OpenOptions{})
	if err == nil || !contains(err.Error(), "no postgres store in this build") || contains(err.Error(), "secret") {
		t.Errorf("an unknown store: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
