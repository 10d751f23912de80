package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestManPageHasEveryCommandAndFlag: bombwatch(8) is made from the
// commands' help; every command and every flag its -h lists is in it, and
// the page renders.
func TestManPageHasEveryCommandAndFlag(t *testing.T) {
	page, err := exec.Command("go", "run", "../../internal/mangen", "-bin", binary, "-readme", "../../README.md").Output()
	if err != nil {
		t.Fatalf("mangen: %v", err)
	}
	text := strings.ReplaceAll(string(page), `\-`, "-")
	_, list, _ := bombwatch(t, "help")
	if list == "" {
		_, _, list = bombwatch(t, "help")
	}
	names := regexp.MustCompile(`(?m)^  ([a-z]+) `).FindAllStringSubmatch(list, -1)
	if len(names) < 10 {
		t.Fatalf("help lists %d commands:\n%s", len(names), list)
	}
	flagRe := regexp.MustCompile(`(?m)^  -([a-z-]+)`)
	for _, n := range names {
		if !strings.Contains(text, ".SS "+n[1]+"\n") {
			t.Errorf("no section for %s", n[1])
		}
		_, _, help := bombwatch(t, n[1], "-h")
		for _, f := range flagRe.FindAllStringSubmatch(help, -1) {
			want := "--" + f[1]
			if len(f[1]) == 1 {
				want = "-" + f[1]
			}
			if !strings.Contains(text, ".B "+want+"\n") {
				t.Errorf("%s: flag %s not in the page", n[1], want)
			}
		}
	}
	if !strings.Contains(text, ".SH CONFIGURATION") || !strings.Contains(text, "merge_delay") {
		t.Error("the README's Config section is not in the page")
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		cmd := exec.Command(groff, "-k", "-man", "-Tutf8", "-ww") // -k: preconv, as man does
		cmd.Stdin = bytes.NewReader(page)
		if out, err := cmd.CombinedOutput(); err != nil || bytes.Contains(out, []byte("warning")) {
			t.Errorf("groff: %v\n%.2000s", err, out)
		}
	}
}

// TestMakeInstall: make install puts the program, page, completion and
// unit under DESTDIR and PREFIX, points the unit at the program, and never
// replaces a config that is there.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("needs make")
	}
	dest := t.TempDir()
	os.MkdirAll(filepath.Join(dest, "etc/bombwatch"), 0o755)
	os.WriteFile(filepath.Join(dest, "etc/bombwatch/bombwatch.yaml"), []byte("# the admin's\n"), 0o644)
	out, err := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/opt/bw").CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, p := range []string{"opt/bw/sbin/bombwatch", "opt/bw/share/man/man8/bombwatch.8.gz",
		"opt/bw/share/bash-completion/completions/bombwatch", "opt/bw/lib/systemd/system/bombwatch.service", "etc/bombwatch/conf.d"} {
		if _, err := os.Stat(filepath.Join(dest, p)); err != nil {
			t.Errorf("not installed: %v", err)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(dest, "opt/bw/lib/systemd/system/bombwatch.service"))
	if !strings.Contains(string(unit), "ExecStart=/opt/bw/sbin/bombwatch run -c /etc/bombwatch/bombwatch.yaml") {
		t.Errorf("the unit's ExecStart is not the installed program:\n%s", unit)
	}
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/bombwatch/bombwatch.yaml")); string(b) != "# the admin's\n" {
		t.Errorf("make install replaced the admin's config: %q", b)
	}
}

// TestDebianPackage builds the package and installs it: bombwatch check
// passes on the installed config, the unit passes systemd-analyze verify,
// man finds the page, and purge removes all the package put there but the
// admin's map files. It installs system-wide, so it runs in CI (.ci/run,
// a throwaway machine) only.
func TestDebianPackage(t *testing.T) {
	if os.Getenv("CI") == "" || os.Geteuid() != 0 {
		t.Skip("installs a package system-wide: runs as root under CI (.ci/run) only")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("make", "-C", "../..", "deb")
	debs, _ := filepath.Glob("../../bin/bombwatch_*.deb")
	if len(debs) == 0 {
		t.Fatal("make deb made no package")
	}
	deb := debs[len(debs)-1]
	t.Logf("%s\n%s", deb, run("dpkg-deb", "-c", deb))
	run("dpkg", "-i", deb)
	defer exec.Command("dpkg", "--purge", "bombwatch").Run()
	run("/usr/sbin/bombwatch", "check", "-c", "/etc/bombwatch/bombwatch.yaml")
	run("systemd-analyze", "verify", "/lib/systemd/system/bombwatch.service")
	if page := strings.TrimSpace(run("man", "-w", "bombwatch")); page != "/usr/share/man/man8/bombwatch.8.gz" {
		t.Errorf("man -w bombwatch: %s", page)
	}
	run("id", "bombwatch")
	os.MkdirAll("/etc/postfix", 0o755)
	mapFile := "/etc/postfix/bombwatch_senders"
	os.WriteFile(mapFile, []byte("spam@example.com REJECT\n"), 0o644)
	defer os.Remove(mapFile)
	run("dpkg", "--purge", "bombwatch")
	for _, p := range []string{"/usr/sbin/bombwatch", "/etc/bombwatch", "/var/lib/bombwatch", "/lib/systemd/system/bombwatch.service",
		"/usr/share/man/man8/bombwatch.8.gz", "/usr/share/bash-completion/completions/bombwatch"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
	if _, err := os.Stat(mapFile); err != nil {
		t.Errorf("purge removed the admin's map file: %v", err)
	}
}
