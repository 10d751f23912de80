package actions

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bombwatch/bombwatch/internal/netns"
)

func nftList(t *testing.T, set string) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "set", "inet", "bombwatch", set).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list set %s: %v: %s", set, err, out)
	}
	return string(out)
}

func TestNFT(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	ctx := context.Background()
	n := &NFT{ActionName: "fw", Table: "inet bombwatch", Ports: []int{25, 465, 587}, Verdict: "drop",
		Guard: NewGuard([]string{"198.51.100.0/24"})}
	if err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(ctx); err != nil { // idempotent
		t.Fatalf("second setup: %v", err)
	}
	if err := n.Run(ctx, Detection{Event: "block", Key: "192.0.2.200", Until: time.Now().Add(time.Hour), Now: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := n.Ensure(ctx); err != nil { // the table is there: kept, with its elements
		t.Fatal(err)
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.200") {
		t.Errorf("Ensure dropped an element:\n%s", s)
	}
	out, _ := exec.Command("nft", "list", "table", "inet", "bombwatch").CombinedOutput()
	if !strings.Contains(string(out), "tcp dport { 25, 465, 587 } drop") || !strings.Contains(string(out), "hook input") {
		t.Fatalf("table:\n%s", out)
	}
	now := time.Now()
	block := func(key string, until time.Time) error {
		return n.Run(ctx, Detection{Event: "block", Key: key, KeyType: "client_ip", Until: until, Now: now})
	}
	for _, k := range []string{"192.0.2.7", "203.0.113.0/24", "2001:db8::7", "2001:db8:1::/48"} {
		if err := block(k, now.Add(time.Hour)); err != nil {
			t.Fatalf("block %s: %v", k, err)
		}
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.7 timeout 1h") {
		t.Errorf("a4:\n%s", s)
	}
	if s := nftList(t, "n4_24"); !strings.Contains(s, "203.0.113.0/24 timeout 1h") {
		t.Errorf("n4_24:\n%s", s)
	}
	if s := nftList(t, "a6") + nftList(t, "n6_48"); !strings.Contains(s, "2001:db8::7") || !strings.Contains(s, "2001:db8:1::/48") {
		t.Errorf("a6, n6_48:\n%s", s)
	}
	// Overlapping networks of two lengths are both enforced, each in its
	// set with its rule; lifting one keeps the other.
	if err := block("203.0.0.0/16", now.Add(time.Hour)); err != nil {
		t.Fatalf("a /16 next to a /24: %v", err)
	}
	if s := nftList(t, "n4_16"); !strings.Contains(s, "203.0.0.0/16") {
		t.Errorf("n4_16:\n%s", s)
	}
	if err := n.Run(ctx, Detection{Event: "unblock", Key: "203.0.113.0/24", KeyType: "client_net"}); err != nil {
		t.Fatal(err)
	}
	if s := nftList(t, "n4_16"); !strings.Contains(s, "203.0.0.0/16") {
		t.Errorf("the /16 went with the /24:\n%s", s)
	}
	if out, _ := exec.Command("nft", "list", "chain", "inet", "bombwatch", "input").CombinedOutput(); strings.Count(string(out), "@n4_16") != 1 {
		t.Errorf("the /16 set's rule, once:\n%s", out)
	}
	// A second NFT (bombwatch bans in its own process) finds the sets.
	other := &NFT{ActionName: "fw", Table: "inet bombwatch", Ports: []int{25, 465, 587}, Verdict: "drop", Guard: NewGuard(nil)}
	if err := other.Run(ctx, Detection{Event: "block", Key: "198.18.0.0/16", KeyType: "client_net", Until: now.Add(time.Hour), Now: now}); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("nft", "list", "chain", "inet", "bombwatch", "input").CombinedOutput(); strings.Count(string(out), "@n4_16") != 1 {
		t.Errorf("the /16 set's rule, once after another process:\n%s", out)
	}
	// A new block of the same key replaces its timeout.
	if err := block("192.0.2.7", now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.7 timeout 2h") {
		t.Errorf("after a second block:\n%s", s)
	}
	// Unblock, twice: the second finds nothing and is no error.
	for range 2 {
		if err := n.Run(ctx, Detection{Event: "unblock", Key: "192.0.2.7", KeyType: "client_ip"}); err != nil {
			t.Fatalf("unblock: %v", err)
		}
	}
	if s := nftList(t, "a4"); strings.Contains(s, "192.0.2.7") {
		t.Errorf("still there after unblock:\n%s", s)
	}
	// The kernel ends the element with the block.
	if err := block("192.0.2.9", now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.9") {
		t.Fatalf("not added:\n%s", s)
	}
	time.Sleep(2200 * time.Millisecond)
	if s := nftList(t, "a4"); strings.Contains(s, "192.0.2.9") {
		t.Errorf("still there after its timeout:\n%s", s)
	}
	// Hostile and protected keys never reach nft.
	for _, k := range []string{"1.2.3.4; flush ruleset", "192.0.2.1 } ; add table ip x {", "127.0.0.1", "::1", "127.0.0.0/7",
		"0.0.0.0", "198.51.100.7", "198.51.0.0/16", "fe80::1%eth0", "sender@example.org", ""} {
		if err := block(k, now.Add(time.Hour)); err == nil {
			t.Errorf("key %q was blocked", k)
		}
	}
	if out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput(); strings.Contains(string(out), "table ip x") {
		t.Errorf("a key changed the ruleset:\n%s", out)
	}
	if err := n.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), "bombwatch") {
		t.Errorf("table left after cleanup:\n%s", out)
	}
}

func TestMaps(t *testing.T) {
	ctx := context.Background()
	guard := NewGuard([]string{"postmaster@example.org", "@partner.example"})
	hostile := []string{`"$(reboot);x"@evil.example`, "a b@example.com", "a@example.com\nnew@entry", "a@example.com\tOK",
		strings.Repeat("x", 250) + "@example.com", "<>", "postmaster@example.org", "x@partner.example", "a,b@example.com"}

	t.Run("postfix texthash", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sender_access")
		os.WriteFile(path, []byte("# the postmaster's own\nfriend@example.net OK\n"), 0o640)
		m := &Map{ActionName: "pf", Kind: "postfix_map", Path: path, MapType: "texthash", Guard: guard}
		if err := m.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		for _, k := range []struct{ typ, key string }{{"sender", "bomber@spam.example"}, {"sender_domain", "spam.example"}, {"client_ip", "192.0.2.5"}, {"client_net", "203.0.113.0/24"}} {
			if err := m.Run(ctx, Detection{Event: "block", KeyType: k.typ, Key: k.key}); err != nil {
				t.Fatalf("%s %s: %v", k.typ, k.key, err)
			}
		}
		for _, k := range hostile {
			if err := m.Run(ctx, Detection{Event: "block", KeyType: "sender", Key: k}); err == nil {
				t.Errorf("hostile sender %q was written", k)
			}
		}
		got, _ := os.ReadFile(path)
		want := "# the postmaster's own\nfriend@example.net OK\n" + beginMark + "\n" +
			"192.0.2.5\tREJECT blocked by bombwatch for sending too much mail\n" +
			"203.0.113\tREJECT blocked by bombwatch for sending too much mail\n" +
			"bomber@spam.example\tREJECT blocked by bombwatch for sending too much mail\n" +
			"spam.example\tREJECT blocked by bombwatch for sending too much mail\n" + endMark + "\n"
		if string(got) != want {
			t.Errorf("map:\n%s\nwant:\n%s", got, want)
		}
		if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
			t.Errorf("mode %v", st.Mode())
		}
		m.Run(ctx, Detection{Event: "unblock", KeyType: "sender", Key: "bomber@spam.example"})
		if got, _ := os.ReadFile(path); strings.Contains(string(got), "bomber@") || !strings.Contains(string(got), "friend@example.net OK") {
			t.Errorf("after unblock:\n%s", got)
		}
		if err := m.Run(ctx, Detection{Event: "block", KeyType: "client_net", Key: "203.0.113.0/26"}); err == nil {
			t.Error("a /26 in a texthash map")
		}
	})

	t.Run("postfix hash with postmap", func(t *testing.T) {
		netns.NeedTool(t, "postmap")
		dir := t.TempDir()
		path := filepath.Join(dir, "client_access")
		os.WriteFile(filepath.Join(dir, "main.cf"), nil, 0o644) // postmap reads a main.cf
		m := &Map{ActionName: "pf", Kind: "postfix_map", Path: path, MapType: "hash", Guard: guard, MTAConfig: dir}
		if err := m.Run(ctx, Detection{Event: "block", KeyType: "client_ip", Key: "192.0.2.5"}); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("postmap", "-c", dir, "-q", "192.0.2.5", "hash:"+path).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "REJECT") {
			t.Errorf("postmap -q: %v %s", err, out)
		}
		m.Run(ctx, Detection{Event: "unblock", KeyType: "client_ip", Key: "192.0.2.5"})
		if out, _ := exec.Command("postmap", "-c", dir, "-q", "192.0.2.5", "hash:"+path).CombinedOutput(); len(out) > 0 {
			t.Errorf("still found after unblock: %s", out)
		}
	})

	t.Run("sendmail access with makemap", func(t *testing.T) {
		makemap := netns.NeedTool(t, "makemap")
		dir := t.TempDir()
		path := filepath.Join(dir, "access")
		os.WriteFile(path, []byte("Connect:localhost RELAY\n"), 0o644)
		cf := filepath.Join(dir, "sendmail.cf") // makemap reads a cf file
		os.WriteFile(cf, nil, 0o644)
		m := &Map{ActionName: "sm", Kind: "sendmail_access", Path: path, Guard: guard, Compiler: makemap, MTAConfig: cf}
		for _, k := range []struct{ typ, key string }{{"sender", "bomber@spam.example"}, {"client_ip", "192.0.2.5"}} {
			if err := m.Run(ctx, Detection{Event: "block", KeyType: k.typ, Key: k.key}); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := os.ReadFile(path)
		if !strings.Contains(string(got), "From:bomber@spam.example\tREJECT") || !strings.Contains(string(got), "Connect:192.0.2.5\tREJECT") ||
			!strings.Contains(string(got), "Connect:localhost RELAY") {
			t.Errorf("access:\n%s", got)
		}
		if _, err := os.Stat(path + ".db"); err != nil {
			t.Errorf("makemap made no access.db: %v", err)
		}
	})

	t.Run("qmail badmailfrom", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "badmailfrom")
		m := &Map{ActionName: "q", Kind: "qmail_badmailfrom", Path: path, Guard: guard}
		m.Run(ctx, Detection{Event: "block", KeyType: "sender", Key: "bomber@spam.example"})
		m.Run(ctx, Detection{Event: "block", KeyType: "sender_domain", Key: "junk.example"})
		if err := m.Run(ctx, Detection{Event: "block", KeyType: "client_ip", Key: "192.0.2.5"}); err == nil {
			t.Error("an address in badmailfrom")
		}
		got, _ := os.ReadFile(path)
		if !strings.Contains(string(got), "\n@junk.example\nbomber@spam.example\n") {
			t.Errorf("badmailfrom:\n%s", got)
		}
	})
}

func TestMailNegativeCache(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "sent")
	fake := filepath.Join(dir, "sendmail")
	os.WriteFile(fake, []byte("#!/bin/sh\necho \"ARGS $*\" >> "+out+"\ncat >> "+out+"\n"), 0o755)
	m := &Mail{ActionName: "notice", To: []string{"postmaster"}, Sendmail: fake, Period: time.Hour, PerHour: 2}
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	send := func(key string, at time.Duration) {
		m.Run(context.Background(), Detection{Event: "block", Rule: "r", KeyType: "sender", Key: key, Time: t0.Add(at), Now: t0.Add(at)})
	}
	send("a@example.org", 0)
	send("a@example.org", time.Minute)                            // cached
	send("b@example.org\nBcc: victim@example.com", 2*time.Minute) // a header injection, and the second notice
	send("c@example.org", 3*time.Minute)                          // over the hourly cap
	send("a@example.org", 70*time.Minute)                         // a new period and hour
	got, _ := os.ReadFile(out)
	s := string(got)
	if n := strings.Count(s, "ARGS -oi -- postmaster"); n != 3 {
		t.Errorf("%d notices, want 3:\n%s", n, s)
	}
	if strings.Contains(s, "\nBcc:") || strings.Contains(s, "c@example.org") {
		t.Errorf("notices:\n%s", s)
	}
}

func TestIPTables(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "ipset")
	netns.NeedTool(t, "iptables")
	ctx := context.Background()
	x := &IPTables{ActionName: "ipt", Set: "bombwatch", Ports: []int{25, 465, 587}, Verdict: "drop", Guard: NewGuard(nil)}
	for range 2 { // idempotent
		if err := x.Setup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := exec.Command("iptables", "-S", "INPUT").CombinedOutput()
	if n := strings.Count(string(out), "--match-set bombwatch4 src"); n != 1 {
		t.Errorf("%d rules for bombwatch4:\n%s", n, out)
	}
	now := time.Now()
	list := func(set string) string {
		out, _ := exec.Command("ipset", "list", set).CombinedOutput()
		return string(out)
	}
	for _, k := range []string{"192.0.2.7", "203.0.113.0/24", "2001:db8::7"} {
		if err := x.Run(ctx, Detection{Event: "block", Key: k, Until: now.Add(time.Hour), Now: now}); err != nil {
			t.Fatalf("block %s: %v", k, err)
		}
	}
	if s := list("bombwatch4"); !strings.Contains(s, "192.0.2.7 timeout 3") || !strings.Contains(s, "203.0.113.0/24 timeout") {
		t.Errorf("bombwatch4:\n%s", s)
	}
	if s := list("bombwatch6"); !strings.Contains(s, "2001:db8::7") {
		t.Errorf("bombwatch6:\n%s", s)
	}
	x.Run(ctx, Detection{Event: "unblock", Key: "192.0.2.7"})
	if s := list("bombwatch4"); strings.Contains(s, "192.0.2.7 ") {
		t.Errorf("after unblock:\n%s", s)
	}
	if err := x.Run(ctx, Detection{Event: "block", Key: "192.0.2.9", Until: now.Add(time.Second), Now: now}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2200 * time.Millisecond)
	if s := list("bombwatch4"); strings.Contains(s, "192.0.2.9") {
		t.Errorf("still there after its timeout:\n%s", s)
	}
	for _, k := range []string{"1.2.3.4 -j ACCEPT", "127.0.0.1", "::1", "10.0.0.0/8; reboot"} {
		if err := x.Run(ctx, Detection{Event: "block", Key: k, Until: now.Add(time.Hour), Now: now}); err == nil {
			t.Errorf("key %q was blocked", k)
		}
	}
	if err := x.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("iptables", "-S", "INPUT").CombinedOutput(); strings.Contains(string(out), "bombwatch") {
		t.Errorf("rule left after cleanup:\n%s", out)
	}
}

// TestNFTRunBatch: a burst of blocks goes in one transaction; one that
// fails the transaction (an unblock of an element gone already) makes each
// go on its own, so the others still apply.
func TestNFTRunBatch(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	ctx := context.Background()
	n := &NFT{ActionName: "fw", Table: "inet bombwatch", Ports: []int{25}, Verdict: "drop", Guard: NewGuard(nil)}
	if err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	block := func(key string) Detection {
		return Detection{Event: "block", KeyType: "client_ip", Key: key, Until: now.Add(time.Hour), Now: now}
	}
	errs := n.RunBatch(ctx, []Detection{block("192.0.2.1"), block("192.0.2.2"), block("2001:db8::1"), block("not an address")})
	if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] == nil {
		t.Fatalf("errors %v; want only the bad key refused", errs)
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.1") || !strings.Contains(s, "192.0.2.2") {
		t.Errorf("a4 after the batch:\n%s", s)
	}
	errs = n.RunBatch(ctx, []Detection{block("192.0.2.3"), {Event: "unblock", KeyType: "client_ip", Key: "192.0.2.99"},
		{Event: "unblock", KeyType: "client_ip", Key: "192.0.2.1"}})
	for i, err := range errs {
		if err != nil {
			t.Errorf("detection %d: %v", i, err)
		}
	}
	if s := nftList(t, "a4"); !strings.Contains(s, "192.0.2.3") || strings.Contains(s, "192.0.2.1 ") || strings.Contains(s, "192.0.2.1,") {
		t.Errorf("a4 after the failed transaction:\n%s", s)
	}
}

// TestNFTReconcile: Reconcile leaves what is there alone, adds what the
// firewall lost and removes what no block holds; Setup keeps the
// elements and writes the chain again only for other ports.
func TestNFTReconcile(t *testing.T) {
	if !netns.Enter(t) {
		return
	}
	netns.NeedTool(t, "nft")
	ctx := context.Background()
	n := &NFT{ActionName: "fw", Table: "inet bombwatch", Ports: []int{25}, Verdict: "drop", Guard: NewGuard(nil)}
	if err := n.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	block := func(key string, d time.Duration) Detection {
		return Detection{Event: "block", Key: key, KeyType: "client_ip", Until: now.Add(d), Now: now}
	}
	for _, d := range []Detection{block("192.0.2.1", time.Hour), block("192.0.2.2", time.Hour), block("198.18.0.0/16", time.Hour)} {
		if err := n.Run(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// 192.0.2.1 stays as it is (its timeout is not made anew), 192.0.2.2
	// and the /16 go, 192.0.2.3 and a /24 come.
	if err := n.Reconcile(ctx, []Detection{block("192.0.2.1", 2*time.Hour), block("192.0.2.3", 2*time.Hour), block("203.0.113.0/24", 2*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	a4 := nftList(t, "a4")
	if !strings.Contains(a4, "192.0.2.1 timeout 1h") || strings.Contains(a4, "192.0.2.2") || !strings.Contains(a4, "192.0.2.3 timeout 2h") {
		t.Errorf("a4 after Reconcile:\n%s", a4)
	}
	if s := nftList(t, "n4_16"); strings.Contains(s, "198.18.0.0/16") {
		t.Errorf("n4_16 kept what no block holds:\n%s", s)
	}
	if s := nftList(t, "n4_24"); !strings.Contains(s, "203.0.113.0/24") {
		t.Errorf("n4_24:\n%s", s)
	}
	// Setup again, for other ports: the chain is written again, the
	// elements stay.
	n2 := &NFT{ActionName: "fw", Table: "inet bombwatch", Ports: []int{25, 587}, Verdict: "drop", Guard: NewGuard(nil)}
	if err := n2.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("nft", "list", "chain", "inet", "bombwatch", "input").CombinedOutput()
	if strings.Count(string(out), "tcp dport { 25, 587 } drop comment") != 4 || strings.Contains(string(out), "dport 25 drop") {
		t.Errorf("chain after Setup with new ports:\n%s", out)
	}
	if a4 := nftList(t, "a4"); !strings.Contains(a4, "192.0.2.1") {
		t.Errorf("Setup lost elements:\n%s", a4)
	}
}

// TestMailFailureIsTriedAgain: a notice sendmail refused is an error, and
// counts neither against the key's period nor the hourly cap: the retry
// sends it.
func TestMailFailureIsTriedAgain(t *testing.T) {
	dir := t.TempDir()
	out, fail := filepath.Join(dir, "sent"), filepath.Join(dir, "fail")
	fake := filepath.Join(dir, "sendmail")
	os.WriteFile(fake, []byte("#!/bin/sh\nif [ -e "+fail+" ]; then echo queue full >&2; exit 75; fi\ncat >> "+out+"\n"), 0o755)
	os.WriteFile(fail, nil, 0o644)
	m := &Mail{ActionName: "notice", To: []string{"postmaster"}, Sendmail: fake, Period: time.Hour, PerHour: 1}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	d := Detection{Event: "block", Rule: "r", KeyType: "sender", Key: "a@example.org", Time: now, Now: now}
	if err := m.Run(context.Background(), d); err == nil || !strings.Contains(err.Error(), "queue full") {
		t.Fatalf("a refused notice: %v", err)
	}
	os.Remove(fail)
	if err := m.Run(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(out); !strings.Contains(string(got), "a@example.org") {
		t.Errorf("the retry sent nothing:\n%s", got)
	}
}
