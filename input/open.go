package input

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
)

// rotatedName matches what rotation makes of a log's name: logrotate's
// "mail.log.1", "mail.log.2.gz", "mail.log-20261130" (dateext, perhaps
// compressed), and "mail.log.gz". Used on file names only, never on lines.
var rotatedName = regexp.MustCompile(`^(.+?)(\.[0-9]+|-[0-9]{8,10})?(\.gz)?$`)

// logOf returns the log a file is a part of: "/var/log/mail.log" for
// "/var/log/mail.log.2.gz", the file itself for a current one. multilog's
// "@….s" files are parts of the directory's "current".
func logOf(path string) string {
	dir, name := filepath.Split(path)
	if strings.HasPrefix(name, "@") && (strings.HasSuffix(name, ".s") || strings.HasSuffix(name, ".u")) {
		return filepath.Join(dir, "current")
	}
	m := rotatedName.FindStringSubmatch(name)
	if m == nil || (m[2] == "" && m[3] == "") {
		return path
	}
	return filepath.Join(dir, m[1])
}

// Group gathers the files of one log — its rotated parts and the current
// file, as a glob or a shell lists them — into one stream each, oldest
// first, so that one parser reads a log across its files: a Postfix
// message whose smtpd line is in mail.log.1 and its qmgr line in mail.log
// keeps its client. Files of other logs keep the order given.
func Group(names []string) [][]string {
	var groups [][]string
	index := map[string]int{}
	for _, n := range names {
		if n == "-" {
			groups = append(groups, []string{n})
			continue
		}
		abs, err := filepath.Abs(n)
		if err != nil {
			abs = n
		}
		key := logOf(abs)
		if i, ok := index[key]; ok {
			groups[i] = append(groups[i], n)
			continue
		}
		index[key] = len(groups)
		groups = append(groups, []string{n})
	}
	for _, g := range groups {
		if len(g) < 2 {
			continue
		}
		abs, _ := filepath.Abs(g[0])
		base := filepath.Base(logOf(abs))
		slices.SortStableFunc(g, func(a, b string) int {
			ca, cb := isCurrent(a), isCurrent(b)
			switch {
			case ca && !cb:
				return 1
			case cb && !ca:
				return -1
			case olderRotation(base, a, b):
				return -1
			case olderRotation(base, b, a):
				return 1
			}
			return 0
		})
	}
	return groups
}

func isCurrent(name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = name
	}
	return logOf(abs) == abs
}

// OpenSources opens the sources of specs: a file, standard input, the journal,
// or a glob. Read to the end, the files of one log given together are one
// source (see Group). Followed, a glob follows each current log it matches
// — its rotated parts are its past, read by its follower when it rotates,
// never followed on their own — and compressed files are not followed.
// A spec that cannot be opened is an error of its own: the others open.
func OpenSources(specs []Spec, o Options) ([]*Source, []error) {
	var srcs []*Source
	var errs []error
	var toEnd []string // read to the end: every file, grouped by log below
	specOf := map[string]Spec{}
	for _, spec := range specs {
		var names []string
		if IsGlob(spec.Path) {
			matches, err := filepath.Glob(spec.Path)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", spec.Path, err))
				continue
			}
			names = matches
			if o.Follow {
				names = followedLogs(matches, nil)
			}
			if len(names) == 0 && !o.Follow {
				errs = append(errs, fmt.Errorf("%s: no file matches", spec.Path))
				continue
			}
		} else {
			names = []string{spec.Path}
		}
		if o.Follow {
			for _, n := range names {
				one := spec
				one.Path = n
				s, err := OpenSource(one, o)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				srcs = append(srcs, s)
			}
			continue
		}
		for _, n := range names {
			toEnd = append(toEnd, n)
			specOf[n] = spec
		}
	}
	for _, g := range Group(toEnd) {
		one := specOf[g[0]]
		one.Path = g[len(g)-1]
		s, err := openSource(one, g, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		srcs = append(srcs, s)
	}
	return srcs, errs
}

// IsGlob reports whether an input path is a glob pattern, not a file.
func IsGlob(path string) bool { return strings.ContainsAny(path, "*?[") }

// followedLogs are the current logs among a glob's matches that are not
// followed already (by path or as the same file under another name), in
// the order matched.
func followedLogs(matches []string, followed []*Source) []string {
	var out []string
	have := map[string]bool{}
	var ids [][2]uint64
	for _, s := range followed {
		have[s.abs] = true
		if s.fol != nil && s.fol.id.Inode != 0 {
			ids = append(ids, [2]uint64{s.fol.id.Device, s.fol.id.Inode})
		}
	}
	for _, m := range matches {
		abs, err := filepath.Abs(m)
		if err != nil {
			abs = m
		}
		if have[abs] || logOf(abs) != abs || strings.HasSuffix(abs, ".gz") {
			continue // followed, or a rotated part of a log
		}
		st, err := os.Stat(abs)
		if err != nil || st.IsDir() {
			continue
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			id := [2]uint64{uint64(sys.Dev), sys.Ino}
			if slices.Contains(ids, id) {
				continue // a followed file under another name (a link)
			}
			ids = append(ids, id)
		}
		have[abs] = true
		out = append(out, abs)
	}
	return out
}

// Globs follows the files that come to match the glob specs: Scan opens
// a source for each new current log, read from its start (it is new).
type Globs struct {
	specs []Spec
	o     Options
}

// NewGlobs watches the glob specs among specs.
func NewGlobs(specs []Spec, o Options) *Globs {
	g := &Globs{o: o}
	for _, s := range specs {
		if IsGlob(s.Path) {
			g.specs = append(g.specs, s)
		}
	}
	return g
}

// Scan returns sources for the logs that came to match since, given the
// sources already merged.
func (g *Globs) Scan(merged []*Source) []*Source {
	var out []*Source
	for _, spec := range g.specs {
		matches, err := filepath.Glob(spec.Path)
		if err != nil {
			continue
		}
		for _, n := range followedLogs(matches, append(merged, out...)) {
			one := spec
			one.Path, one.FromStart = n, true
			if s, err := OpenSource(one, g.o); err == nil {
				out = append(out, s)
			}
		}
	}
	return out
}
