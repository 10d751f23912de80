// Package pgtest starts a throwaway PostgreSQL server for tests: a
// cluster made by initdb in a temporary directory, listening on a free
// port of 127.0.0.1 only, stopped and removed when the test ends. Never a
// mock, and never the machine's own server.
//
// PostgreSQL refuses to run as root: as root the cluster is made and run
// as the "postgres" user (Debian's package makes it). Without the server
// binaries (Debian's postgresql package: /usr/lib/postgresql/*/bin) the
// test is skipped, saying so — or fails under CI, which installs them.
package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

// binDir finds the directory of initdb and pg_ctl: Debian keeps them out
// of PATH, under /usr/lib/postgresql/VERSION/bin.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (pg_ctl): apt-get install postgresql")
}

var databases atomic.Int64

// Server is a running throwaway server.
type Server struct {
	dir, data, bin, log string
	asUser              string // run as this user ("" for the current one)
	Port                int
}

// Start starts a server for the test, or skips the test when the machine
// cannot run one. The server is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := binDir()
	if err != nil {
		skipOrFail(t, "PostgreSQL tests need a server: %v", err)
	}
	s := &Server{bin: bin}
	dir, err := os.MkdirTemp("", "bombwatch-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.dir, s.data, s.log = dir, filepath.Join(dir, "data"), filepath.Join(dir, "server.log")
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			skipOrFail(t, "PostgreSQL refuses to run as root, and there is no postgres user to run it as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		s.asUser = "postgres"
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "bombwatch", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// A free port, taken and let go: the server binds it next.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.run("pg_ctl", "-D", s.data, "-m", "immediate", "-w", "stop") })
	return s
}

func (s *Server) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", s.Port, s.dir)
	if out, err := s.run("pg_ctl", "-D", s.data, "-o", opts, "-l", s.log, "-w", "start"); err != nil {
		log, _ := os.ReadFile(s.log)
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	return nil
}

// Stop stops the server, as an outage would: connections are cut.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if out, err := s.run("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop"); err != nil {
		t.Fatalf("pg_ctl stop: %v\n%s", err, out)
	}
}

// Restart starts the server again after Stop, on the same port.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
}

// Freeze stops every process of the server (SIGSTOP), as a hung machine
// or a network that drops packets would: connections are neither answered
// nor refused. Thaw resumes them; the test's end does too.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	pids, err := s.processes()
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids { // the postmaster first: it forks no more
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	t.Cleanup(func() { s.signal(syscall.SIGCONT) })
}

// Thaw resumes the processes Freeze stopped.
func (s *Server) Thaw(t testing.TB) {
	t.Helper()
	if err := s.signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

func (s *Server) signal(sig syscall.Signal) error {
	pids, err := s.processes()
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
	return err
}

// processes are the server's postmaster and its children.
func (s *Server) processes() ([]int, error) {
	data, err := os.ReadFile(filepath.Join(s.data, "postmaster.pid"))
	if err != nil {
		return nil, fmt.Errorf("the server's pid: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	postmaster, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("the server's pid: %w", err)
	}
	pids := []int{postmaster}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(postmaster) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// run runs one of the server's programs, as the server's user.
func (s *Server) run(prog string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// NewDatabase makes an empty database and returns its DSN: each call a
// new one, so that tests do not see each other's tables.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("t%d", databases.Add(1))
	if out, err := s.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", "bombwatch", name); err != nil {
		t.Fatalf("createdb %s: %v\n%s", name, err, out)
	}
	return fmt.Sprintf("postgres://bombwatch@127.0.0.1:%d/%s?sslmode=disable", s.Port, name)
}

// skipOrFail skips, or fails under CI (CI set), where the server is
// installed and a skip would hide that it is not.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
