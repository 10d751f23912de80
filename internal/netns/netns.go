// Package netns lets a test change a firewall without touching the host's:
// it runs the test again inside a private network namespace.
package netns

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Enter runs the calling test again inside a private network namespace
// (unshare -n) and reports whether this is the copy inside. The copy
// outside returns false once the inside one passed, and fails with it.
func Enter(t *testing.T) bool {
	t.Helper()
	if os.Getenv("BOMBWATCH_NETNS") == "1" {
		return true
	}
	unshare := NeedTool(t, "unshare")
	if out, err := exec.Command(unshare, "-n", "true").CombinedOutput(); err != nil {
		SkipOrFail(t, "cannot make a network namespace here (unshare -n: %v: %s)", err, out)
	}
	cmd := exec.Command(unshare, "-n", os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), "BOMBWATCH_NETNS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in a private network namespace:\n%s", out)
	if err != nil {
		t.Fatalf("the test failed in its network namespace: %v", err)
	}
	if strings.Contains(string(out), "--- SKIP") {
		t.Skip("skipped in its network namespace (see the log)")
	}
	return false
}

// packages name the Debian package of each tool.
var packages = map[string]string{"nft": "nftables", "postmap": "postfix", "makemap": "sendmail-bin", "unshare": "util-linux",
	"ipset": "ipset", "iptables": "iptables"}

// NeedTool returns the path of a tool, or skips the test — fails it under
// CI, which installs them all.
func NeedTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "%s is not installed (apt-get install %s)", name, packages[name])
	}
	return p
}

// SkipOrFail skips, or fails under CI.
func SkipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
