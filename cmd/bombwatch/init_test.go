package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// layout makes a fake machine: files under a root, by path and content.
func layout(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		path := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			os.MkdirAll(path, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestInitLayouts: on Postfix, sendmail and qmail machines init writes a
// config that loads, follows the MTA's log, uses the firewall that is
// there and ignores the networks the MTA relays for; it never overwrites.
func TestInitLayouts(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  []string
		not   []string
	}{
		{"postfix", map[string]string{
			"etc/postfix/main.cf": "myhostname = mx.example.org\nmynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n  192.0.2.0/24, [2001:db8:1::]/48 hash:/etc/postfix/network_table\nrelayhost =\n",
			"var/log/mail.log":    "",
			"usr/sbin/nft":        "",
		}, []string{"{path: /var/log/mail.log, format: auto}", `"192.0.2.0/24"`, `"2001:db8:1::/48"`, `"::ffff:127.0.0.0/104"`, "fw: {type: nft}", "postfix_map"},
			[]string{"network_table"}},
		{"postfix on journald", map[string]string{
			"etc/postfix/main.cf": "mynetworks = 127.0.0.0/8\n",
			"var/log/journal/":    "",
			"usr/sbin/ipset":      "",
		}, []string{"{path: journald, format: journald}", "fw: {type: iptables}", `ignore: ["127.0.0.0/8", "::1"]`}, nil},
		{"sendmail", map[string]string{
			"etc/mail/sendmail.cf": "",
			"etc/mail/access":      "# local\nConnect:localhost.localdomain RELAY\nConnect:192.168.1 RELAY\n10.1 RELAY\nIPv6:2001:db8::/32 RELAY\nFrom:spam@example.com REJECT\nTo:example.org RELAY\n",
			"var/log/maillog":      "",
		}, []string{"{path: /var/log/maillog, format: auto}", `"192.168.1.0/24"`, `"10.1.0.0/16"`, `"2001:db8::/32"`, "# fw: {type: nft}", "sendmail_access"},
			[]string{"spam@example.com"}},
		{"qmail", map[string]string{
			"var/qmail/control/me":        "mx.example.org\n",
			"etc/tcp.smtp":                "127.:allow,RELAYCLIENT=\"\"\n192.168.5.:allow,RELAYCLIENT=\"\"\n:allow\n",
			"var/log/qmail/current":       "",
			"var/log/qmail/smtpd/current": "",
			"sbin/nft":                    "",
		}, []string{"{path: /var/log/qmail/current, format: qmail}", "{path: /var/log/qmail/smtpd/current, format: qmail}", `"192.168.5.0/24"`, "fw: {type: nft}", "qmail_badmailfrom"},
			[]string{`"127.0.0.0/8", "127.0.0.0/8"`}},
		{"nothing", map[string]string{}, []string{"Found no MTA", "{path: /var/log/mail.log, format: auto}"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := layout(t, tt.files)
			code, out, errOut := bombwatch(t, "init", "--print", "--root", root)
			if code != 0 {
				t.Fatalf("init --print: exit %d: %s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("the config lacks %q:\n%s", w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("the config holds %q:\n%s", n, out)
				}
			}
			if code, _, errOut := bombwatch(t, "init", "--root", root); code != 0 {
				t.Fatalf("init: exit %d: %s", code, errOut)
			}
			path := filepath.Join(root, "etc/bombwatch/bombwatch.yaml")
			written, err := os.ReadFile(path)
			if err != nil || string(written) != out {
				t.Errorf("wrote %q (%v), want what --print showed", written, err)
			}
			if code, _, errOut := bombwatch(t, "check", "-c", path); code != 0 {
				t.Errorf("check of the written config: exit %d: %s", code, errOut)
			}
			os.WriteFile(path, []byte("# mine\n"), 0o644)
			if code, _, errOut := bombwatch(t, "init", "--root", root); code != 1 || !strings.Contains(errOut, "never overwrites") {
				t.Errorf("init over an existing config: exit %d: %s", code, errOut)
			}
			if b, _ := os.ReadFile(path); string(b) != "# mine\n" {
				t.Errorf("init overwrote the admin's config: %q", b)
			}
		})
	}
}
