package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// flagLine is a flag that takes a value in a command's -h: "  -top int".
var flagLine = regexp.MustCompile(`(?m)^  -([a-z-]+) \S+$`)

// TestNoFlagValuePanics gives every flag that takes a value, of every
// command, out-of-range, negative, empty and nonsense values: each is
// either taken or refused, never a panic.
func TestNoFlagValuePanics(t *testing.T) {
	dir, _, log, db := floodState(t)
	// run refuses a config with no input and no rule once its flags are
	// read, rather than running.
	idle := writeFile(t, "idle.yaml", "inputs: []\nrules: []\n")
	// What each command is given besides the flag tried: flags before it
	// (the flag tried, given after, wins), then arguments.
	type given struct{ flags, args []string }
	rest := map[string]given{
		"run":      {[]string{"-c", idle, "--log-clock"}, nil},
		"replay":   {nil, []string{log}},
		"parse":    {[]string{"--stats"}, []string{log}},
		"report":   {[]string{"--db", db}, nil},
		"explain":  {[]string{"--db", db}, []string{"flood@bomb.example"}},
		"bans":     {[]string{"--db", db}, []string{"list"}},
		"check":    {nil, nil},
		"generate": {[]string{"--lines", "10"}, nil},
		"bench":    {[]string{"--lines", "1000", "--distinct", "0"}, nil},
		"version":  {nil, nil},
	}
	values := []string{"", "-1", "0", "99999999999999999999", "-99999999999999999999", "x", "1e400", "-1s", "1000000d"}
	tried := 0
	for cmd, args := range rest {
		out, _ := exec.Command(binary, cmd, "-h").CombinedOutput()
		for _, m := range flagLine.FindAllStringSubmatch(string(out), -1) {
			flag := m[1]
			for _, v := range values {
				tried++
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				argv := append(append(append([]string{cmd}, args.flags...), "--"+flag+"="+v), args.args...)
				c := exec.CommandContext(ctx, binary, argv...)
				c.Dir = dir // -o and --keep write here
				got, _ := c.CombinedOutput()
				cancel()
				if s := string(got); strings.Contains(s, "panic:") || strings.Contains(s, "goroutine ") {
					t.Errorf("bombwatch %s --%s=%q panicked:\n%s", cmd, flag, v, s)
				}
			}
		}
	}
	if tried < 100 {
		t.Errorf("only %d flag values tried: the help's flag lines were not found", tried)
	}
}
