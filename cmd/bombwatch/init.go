package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/bombwatch/bombwatch/config"
)

// runInit looks at the machine and writes a config that works there: the
// MTA's log (a file, or journald), the firewall that is there, and the
// MTA's own networks to ignore. It never overwrites a file.
func runInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("init", stderr, "[--print] [--root DIR] [-o FILE]")
	print := fs.Bool("print", false, "print the config instead of writing it")
	root := fs.String("root", "/", "the machine's root `directory` (another one for tests and images)")
	out := fs.String("o", "/etc/bombwatch/bombwatch.yaml", "the config `file` to write, under --root")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	m := survey(*root)
	text := m.config()
	// What init writes must load: a test of every layout checks it too.
	if _, err := config.Parse("init", []byte(text)); err != nil {
		return fmt.Errorf("the config made for this machine does not load (a bug): %v", err)
	}
	if *print {
		_, err := io.WriteString(stdout, text)
		return err
	}
	path := filepath.Join(*root, *out)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists: init never overwrites a config (--print shows what it would write)", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "bombwatch init: wrote %s (%s); `bombwatch check -c %s` shows it as it takes effect\n", path, m.summary(), *out)
	return nil
}

// machine is what init found.
type machine struct {
	root     string
	mta      string // postfix, sendmail, qmail; "" when none was found
	inputs   []guessedInput
	journald bool // the MTA logs to journald only
	firewall string
	ignore   []string
	found    []string // what was seen, said in the config's comments
}

type guessedInput struct{ path, format string }

func (m *machine) exists(p string) bool {
	_, err := os.Stat(filepath.Join(m.root, p))
	return err == nil
}

func (m *machine) read(p string) []byte {
	b, _ := os.ReadFile(filepath.Join(m.root, p))
	return b
}

// survey looks at the machine under root.
func survey(root string) machine {
	m := machine{root: root, ignore: []string{"127.0.0.0/8", "::1"}}
	switch {
	case m.exists("etc/postfix/main.cf"):
		m.mta = "postfix"
		m.found = append(m.found, "Postfix (/etc/postfix/main.cf)")
		m.ignorePostfix()
	case m.exists("etc/mail/sendmail.cf"):
		m.mta = "sendmail"
		m.found = append(m.found, "sendmail (/etc/mail/sendmail.cf)")
		m.ignoreSendmail()
	case m.exists("var/qmail/control"):
		m.mta = "qmail"
		m.found = append(m.found, "qmail (/var/qmail/control)")
		m.ignoreQmail()
	}
	m.guessLogs()
	for _, fw := range []struct{ name, bin string }{{"nft", "nft"}, {"iptables", "ipset"}} {
		for _, dir := range []string{"usr/sbin", "sbin"} {
			if m.firewall == "" && m.exists(filepath.Join(dir, fw.bin)) {
				m.firewall = fw.name
				m.found = append(m.found, fmt.Sprintf("%s (/%s/%s)", fw.name, dir, fw.bin))
			}
		}
	}
	return m
}

// guessLogs finds where the MTA logs: the first log file that is there,
// else journald when the machine keeps a journal, else the usual file,
// followed once it appears.
func (m *machine) guessLogs() {
	if m.mta == "qmail" {
		// multilog directories: qmail-send's and qmail-smtpd's, read
		// together so that messages get their clients.
		for _, set := range [][]string{
			{"var/log/qmail/current", "var/log/qmail/smtpd/current"},
			{"var/log/qmail/qmail-send/current", "var/log/qmail/qmail-smtpd/current"},
			{"service/qmail-send/log/main/current", "service/qmail-smtpd/log/main/current"},
		} {
			if m.exists(set[0]) {
				for _, p := range set {
					if m.exists(p) {
						m.inputs = append(m.inputs, guessedInput{"/" + p, "qmail"})
					}
				}
				return
			}
		}
		m.inputs = append(m.inputs, guessedInput{"/var/log/qmail/current", "qmail"})
		return
	}
	for _, p := range []string{"var/log/mail.log", "var/log/maillog", "var/log/mail/mail.log"} {
		if m.exists(p) {
			m.inputs = append(m.inputs, guessedInput{"/" + p, "auto"})
			return
		}
	}
	if m.exists("var/log/journal") || m.exists("run/systemd/journal") {
		m.journald = true
		m.inputs = append(m.inputs, guessedInput{"journald", "journald"})
		return
	}
	m.inputs = append(m.inputs, guessedInput{"/var/log/mail.log", "auto"})
}

// addIgnore adds a network the MTA relays for, as a CIDR.
func (m *machine) addIgnore(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	// Postfix writes IPv6 networks in brackets: [::1]/128, [2001:db8::]/32.
	s = strings.Replace(strings.Replace(s, "[", "", 1), "]", "", 1)
	var out string
	if p, err := netip.ParsePrefix(s); err == nil {
		out = p.Masked().String()
	} else if a, err := netip.ParseAddr(s); err == nil {
		out = netip.PrefixFrom(a, a.BitLen()).String()
	} else if p, ok := octets(s); ok {
		out = p.String()
	} else {
		return // a table (hash:…), a file (/etc/…), a name: left to the admin
	}
	if out == "127.0.0.0/8" || out == "::1/128" || slices.Contains(m.ignore, out) {
		return
	}
	m.ignore = append(m.ignore, out)
}

// octets reads a network as sendmail and tcprules write it: "192.168.1"
// or "192.168.1." is 192.168.1.0/24.
func octets(s string) (netip.Prefix, bool) {
	parts := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(parts) == 0 || len(parts) > 4 {
		return netip.Prefix{}, false
	}
	b := [4]byte{}
	for i, p := range parts {
		var n int
		if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 0 || n > 255 || fmt.Sprint(n) != p {
			return netip.Prefix{}, false
		}
		b[i] = byte(n)
	}
	return netip.PrefixFrom(netip.AddrFrom4(b), 8*len(parts)), true
}

// ignorePostfix reads mynetworks from main.cf (with its continuation
// lines).
func (m *machine) ignorePostfix() {
	var value strings.Builder
	in := false
	sc := bufio.NewScanner(bytes.NewReader(m.read("etc/postfix/main.cf")))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case in && (strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")):
			value.WriteString(" " + line)
		case strings.HasPrefix(line, "mynetworks") && strings.Contains(line, "="):
			name, v, _ := strings.Cut(line, "=")
			if strings.TrimSpace(name) != "mynetworks" {
				in = false
				continue
			}
			value.Reset()
			value.WriteString(v)
			in = true
		default:
			in = false
		}
	}
	for _, f := range strings.FieldsFunc(value.String(), func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		m.addIgnore(f)
	}
}

// ignoreSendmail reads the access map's RELAY entries for networks.
func (m *machine) ignoreSendmail() {
	sc := bufio.NewScanner(bytes.NewReader(m.read("etc/mail/access")))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || !strings.EqualFold(f[1], "RELAY") {
			continue
		}
		key := strings.TrimPrefix(f[0], "Connect:")
		if strings.Contains(key, ":") && !strings.HasPrefix(key, "IPv6:") {
			continue // From:, To:
		}
		m.addIgnore(strings.TrimPrefix(key, "IPv6:"))
	}
}

// ignoreQmail reads tcpserver's rules for the clients qmail relays for
// (RELAYCLIENT).
func (m *machine) ignoreQmail() {
	for _, p := range []string{"etc/tcp.smtp", "etc/tcprules.d/tcp.smtp", "etc/tcp/smtp"} {
		sc := bufio.NewScanner(bytes.NewReader(m.read(p)))
		for sc.Scan() {
			line := sc.Text()
			addr, rule, ok := strings.Cut(line, ":")
			if !ok || strings.HasPrefix(addr, "#") || !strings.Contains(rule, "RELAYCLIENT") || !strings.HasPrefix(rule, "allow") {
				continue
			}
			m.addIgnore(addr)
		}
	}
}

func (m *machine) summary() string {
	mta := m.mta
	if mta == "" {
		mta = "no MTA found"
	}
	fw := m.firewall
	if fw == "" {
		fw = "no firewall tool"
	}
	return fmt.Sprintf("%s, %d input(s), %s, %d network(s) ignored", mta, len(m.inputs), fw, len(m.ignore))
}

// config writes the config: commented, logging only until the admin
// chooses what blocks.
func (m *machine) config() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# bombwatch's config, written by `bombwatch init` for this machine.")
	if len(m.found) > 0 {
		w("# Found: %s.", strings.Join(m.found, ", "))
	} else {
		w("# Found no MTA and no firewall tool: edit inputs below.")
	}
	w("# It runs the built-in rules (`bombwatch check` prints them) with the log")
	w("# action: what would be blocked is logged, nothing is blocked until you")
	w("# give rules a blocking action (below). conf.d/*.yaml beside this file")
	w("# is read after it.")
	w("state: /var/lib/bombwatch/state.db")
	w("inputs:")
	for _, in := range m.inputs {
		w("  - {path: %s, format: %s}", in.path, in.format)
	}
	if m.mta == "qmail" {
		w("# qmail-send's log and qmail-smtpd's, read together: messages get the")
		w("# client of their session.")
	}
	w("# Never blocked: loopback and the networks the MTA relays for.")
	quoted := make([]string, len(m.ignore))
	for i, s := range m.ignore {
		quoted[i] = fmt.Sprintf("%q", s)
	}
	w("ignore: [%s]", strings.Join(quoted, ", "))
	var acts []string // active lines first, then suggestions
	switch m.firewall {
	case "nft":
		acts = append(acts, "  fw: {type: nft}              # table inet bombwatch: drops the mail ports from blocked clients")
	case "iptables":
		acts = append(acts, "  fw: {type: iptables}         # ipsets bombwatch4/6 and a rule each that drops the mail ports")
	default:
		acts = append(acts, "  # fw: {type: nft}            # once nftables is installed")
	}
	switch m.mta {
	case "postfix":
		acts = append(acts, "  # senders: {type: postfix_map, path: /etc/postfix/bombwatch_senders}",
			"  #   then in main.cf: smtpd_sender_restrictions = check_sender_access hash:/etc/postfix/bombwatch_senders")
	case "sendmail":
		acts = append(acts, "  # access: {type: sendmail_access, path: /etc/mail/access}")
	case "qmail":
		acts = append(acts, "  # badmailfrom: {type: qmail_badmailfrom, path: /var/qmail/control/badmailfrom}")
	}
	if m.firewall == "" {
		w("# actions:") // none to name yet: an empty mapping would be an error
	} else {
		w("actions:")
	}
	for _, a := range acts {
		w("%s", a)
	}
	w("# To block as well as log, copy a built-in rule from `bombwatch check`")
	w("# here, with its actions, e.g.:")
	w("# rules:")
	w("#   - {name: client-flood, on: [accepted], key: client_ip, limit: 60, per: 1m,")
	w("#      adapt: {history: 8d, factor: 3, max: 10}, block: 1h, actions: [log, fw]}")
	return b.String()
}
