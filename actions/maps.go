package actions

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bombwatch/bombwatch/internal/safefile"
)

// Map writes blocked senders and clients into an MTA's table:
//
//	postfix_map        check_sender_access / check_client_access tables
//	                   ("KEY REJECT text"), compiled with postmap when the
//	                   map type needs it (hash, lmdb, btree, cdb)
//	sendmail_access    /etc/mail/access ("From:KEY REJECT", "Connect:IP
//	                   REJECT"), compiled with makemap
//	qmail_badmailfrom  control/badmailfrom ("user@domain", "@domain")
//
// Only the part of the file between "# BEGIN bombwatch" and "# END
// bombwatch" is bombwatch's: the rest — the postmaster's own entries — is
// kept as it is. The file is replaced atomically (a temporary file renamed
// over it), and a key reaches it only after Guard passed it, so that no
// sender can add a line of its own.
type Map struct {
	ActionName string
	Kind       string // postfix_map, sendmail_access, qmail_badmailfrom
	Path       string
	MapType    string // postfix: hash, lmdb, btree, cdb, texthash, cidr
	Reply      string // "REJECT text" for postfix and sendmail
	Guard      *Guard
	DryRunOnly bool
	Retries
	Logger *slog.Logger
	// Compiler overrides postmap or makemap.
	Compiler string
	// MTAConfig is Postfix's configuration directory (postmap -c), or
	// sendmail's cf file (makemap -C), when not the default.
	MTAConfig string

	mu sync.Mutex
}

const (
	beginMark = "# BEGIN bombwatch: entries between these lines are rewritten by bombwatch"
	endMark   = "# END bombwatch"
)

func (m *Map) Name() string   { return m.ActionName }
func (m *Map) External() bool { return true }
func (m *Map) Enforces() bool { return true }
func (m *Map) DryRun() bool   { return m.DryRunOnly }

// Setup has nothing to make: Reconcile brings bombwatch's part of the map
// to the blocks in force.
func (m *Map) Setup(ctx context.Context) error { return nil }

// Cleanup removes bombwatch's entries.
func (m *Map) Cleanup(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.write(ctx, map[string]bool{})
}

// Reconcile makes bombwatch's part of the map hold exactly the entries of
// want. A map that holds them already, compiled, is not touched: no
// rewrite, no postmap.
func (m *Map) Reconcile(ctx context.Context, want []Detection) error {
	lines := map[string]bool{}
	for _, d := range want {
		if line, err := m.line(d.KeyType, d.Key); err == nil {
			lines[line] = true
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := m.read()
	if err != nil {
		return err
	}
	if maps.Equal(entries, lines) && m.compiled() {
		return nil
	}
	return m.write(ctx, lines)
}

// compiled reports whether the map needs no compiling, or postmap or
// makemap wrote its output after the map was last written.
func (m *Map) compiled() bool {
	if m.Kind == "qmail_badmailfrom" || m.Kind == "postfix_map" && slices.Contains([]string{"texthash", "cidr", "inline", ""}, m.MapType) {
		return true
	}
	src, err := os.Stat(m.Path)
	if err != nil {
		return false
	}
	for _, p := range m.compiledPaths()[1:] {
		if st, err := os.Stat(p); err == nil && !st.ModTime().Before(src.ModTime()) {
			return true
		}
	}
	return false
}

func (m *Map) Run(ctx context.Context, d Detection) error {
	line, err := m.line(d.KeyType, d.Key)
	if err != nil {
		return err
	}
	// The entries are read from the file each time, so that the daemon and
	// `bombwatch bans` see each other's.
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := m.read()
	if err != nil {
		return err
	}
	if d.Event == "unblock" {
		if !entries[line] {
			return nil
		}
		delete(entries, line)
	} else {
		if entries[line] {
			return nil
		}
		entries[line] = true
	}
	return m.write(ctx, entries)
}

// RunBatch applies several detections with one rewrite of the map and
// one postmap: a burst of blocks costs one write, not one each.
func (m *Map) RunBatch(ctx context.Context, ds []Detection) []error {
	errs := make([]error, len(ds))
	m.mu.Lock()
	defer m.mu.Unlock()
	entries, err := m.read()
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	changed := false
	for i, d := range ds {
		line, err := m.line(d.KeyType, d.Key)
		if err != nil {
			errs[i] = err
			continue
		}
		if d.Event == "unblock" {
			changed = changed || entries[line]
			delete(entries, line)
		} else {
			changed = changed || !entries[line]
			entries[line] = true
		}
	}
	if !changed {
		return errs
	}
	if err := m.write(ctx, entries); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
	return errs
}

// read returns the lines of bombwatch's part of the file.
func (m *Map) read() (map[string]bool, error) {
	data, err := safefile.ReadFile(m.Path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	entries := map[string]bool{}
	inside := false
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(l, "# BEGIN bombwatch"):
			inside = true
		case strings.HasPrefix(l, endMark):
			inside = false
		case inside && l != "":
			entries[l] = true
		}
	}
	return entries, nil
}

// line is the map's entry for a key, or why it cannot have one.
func (m *Map) line(keyType, key string) (string, error) {
	reply := m.Reply
	if reply == "" {
		reply = "REJECT blocked by bombwatch for sending too much mail"
	}
	switch keyType {
	case "sender", "sender_domain":
		if err := m.Guard.Sender(keyType, key); err != nil {
			return "", err
		}
		switch m.Kind {
		case "qmail_badmailfrom":
			if keyType == "sender_domain" {
				return "@" + key, nil
			}
			return key, nil
		case "sendmail_access":
			return "From:" + key + "\t" + reply, nil
		}
		return key + "\t" + reply, nil
	case "client_ip", "client_net":
		if m.Kind == "qmail_badmailfrom" {
			return "", fmt.Errorf("badmailfrom holds senders, not %s", keyType)
		}
		p, err := m.Guard.Network(key)
		if err != nil {
			return "", err
		}
		k, err := m.clientKey(p)
		if err != nil {
			return "", err
		}
		if m.Kind == "sendmail_access" {
			return "Connect:" + k + "\t" + reply, nil
		}
		return k + "\t" + reply, nil
	case "sasl_user":
		// check_sasl_access (Postfix 2.11+): "login REJECT text".
		if m.Kind != "postfix_map" || m.MapType == "cidr" {
			return "", refuse("a sasl_user key has no place in a %s %s", m.Kind, m.MapType)
		}
		if err := m.Guard.User(key); err != nil {
			return "", err
		}
		return key + "\t" + reply, nil
	}
	return "", fmt.Errorf("a %s key has no place in a %s", keyType, m.Kind)
}

// clientKey writes a network as the map matches it: a cidr table takes
// CIDRs; the others take an address, or the leading octets of an IPv4
// network on an octet boundary.
func (m *Map) clientKey(p netip.Prefix) (string, error) {
	if p.IsSingleIP() {
		return p.Addr().String(), nil
	}
	if m.Kind == "postfix_map" && m.MapType == "cidr" {
		return p.String(), nil
	}
	if p.Addr().Is4() && p.Bits()%8 == 0 && p.Bits() > 0 {
		octets := strings.Split(p.Addr().String(), ".")
		return strings.Join(octets[:p.Bits()/8], "."), nil
	}
	return "", fmt.Errorf("%s: this map matches octet networks only (use map_type: cidr with Postfix)", p)
}

// write replaces bombwatch's part of the file and compiles the map.
//
// Neither the map nor what postmap or makemap compile it into is written
// through a symbolic link, nor in a directory every user may write to:
// bombwatch and postmap run as root, and a link there would make them
// copy or overwrite another file.
func (m *Map) write(ctx context.Context, entries map[string]bool) error {
	if err := safefile.SafeDir(filepath.Dir(m.Path)); err != nil {
		return err
	}
	if err := safefile.NotLink(m.compiledPaths()...); err != nil {
		return err
	}
	old, err := safefile.ReadFile(m.Path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	mode := os.FileMode(0o644)
	if st, err := os.Lstat(m.Path); err == nil {
		mode = st.Mode().Perm()
	}
	var out bytes.Buffer
	inside := false
	for _, l := range strings.SplitAfter(string(old), "\n") {
		switch {
		case strings.HasPrefix(l, "# BEGIN bombwatch"):
			inside = true
		case strings.HasPrefix(l, endMark):
			inside = false
		case !inside && l != "":
			out.WriteString(l)
			if !strings.HasSuffix(l, "\n") {
				out.WriteByte('\n')
			}
		}
	}
	lines := make([]string, 0, len(entries))
	for l := range entries {
		lines = append(lines, l)
	}
	sort.Strings(lines)
	out.WriteString(beginMark + "\n")
	for _, l := range lines {
		out.WriteString(l + "\n")
	}
	out.WriteString(endMark + "\n")
	tmp, err := os.CreateTemp(filepath.Dir(m.Path), "."+filepath.Base(m.Path)+".bombwatch-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	tmp.Chmod(mode)
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	tmp.Close()
	if err := os.Rename(tmp.Name(), m.Path); err != nil {
		return err
	}
	return m.compile(ctx)
}

// compiledPaths are the map and the files postmap or makemap write from it.
func (m *Map) compiledPaths() []string {
	out := []string{m.Path}
	for _, ext := range []string{".db", ".lmdb", ".cdb", ".dir", ".pag"} {
		out = append(out, m.Path+ext)
	}
	return out
}

// compile runs postmap or makemap where the map type needs it.
func (m *Map) compile(ctx context.Context) error {
	var cmd *exec.Cmd
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch m.Kind {
	case "postfix_map":
		switch m.MapType {
		case "texthash", "cidr", "inline", "":
			return nil
		}
		var args []string
		if m.MTAConfig != "" {
			args = append(args, "-c", m.MTAConfig)
		}
		cmd = exec.CommandContext(ctx, orDefault(m.Compiler, "postmap"), append(args, m.MapType+":"+m.Path)...)
	case "sendmail_access":
		var args []string
		if m.MTAConfig != "" {
			args = append(args, "-C", m.MTAConfig)
		}
		cmd = exec.CommandContext(ctx, orDefault(m.Compiler, "makemap"), append(args, orDefault(m.MapType, "hash"), m.Path)...)
		f, err := os.OpenFile(m.Path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd.Stdin = f
	default:
		return nil
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", cmd.Args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
