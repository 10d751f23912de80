package parsers

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options are what a parser needs to know about the file it reads.
type Options struct {
	// File is the name reported in events.
	File string
	// Location is the zone of stamps that carry none (classic syslog).
	// Nil means UTC.
	Location *time.Location
	// Reference is the latest time the log can hold: the file's
	// modification time for a finished log, the current time for a live one.
	// Classic syslog stamps have no year; the year is the latest that puts
	// the stamp no later than a day after Reference.
	Reference time.Time
	// Now, when set, moves the reference with the wall clock: a daemon
	// that runs past New Year gives January's lines the new year.
	Now func() time.Time
}

// Parser reads the lines of one log, in order.
type Parser interface {
	// Parse reads one line, without its line ending; lineNo is 1-based.
	// It calls emit for each event the line completes (the Event is only
	// valid during the call) and reports whether it recognised the line.
	Parse(line []byte, lineNo int64, emit func(*Event)) bool
}

// Resumable is a parser that remembers, across lines, what it counted
// and the log may name again: Postfix logs a deferred message's "from="
// line at every retry, hours apart. A reader that stops and resumes saves
// Counted with its position and hands it back with SetCounted, so that a
// retry after a restart is not counted twice.
type Resumable interface {
	// Counted returns what was counted and may come again, at most
	// MaxCounted entries, newest first.
	Counted() []string
	SetCounted([]string)
}

// Finisher is a parser that holds lines until a later one says what they
// were (sendmail's transactions). At the end of a finished log, Finish
// hands on what it holds as it is; a followed log has no end, and its
// parser hands held lines on once the line they wait for is overdue.
type Finisher interface {
	Finish(emit func(*Event))
}

// MaxCounted bounds what a Resumable parser hands on to be saved.
const MaxCounted = 4096

// Format is one log format in the registry.
type Format struct {
	Name string
	// New returns a parser for one file.
	New func(Options) Parser
	// Sniff says how surely a line belongs to the format: 0 not at all,
	// 1 maybe (a shape other formats share), 2 certainly.
	Sniff func(line []byte) int
}

var registry struct {
	sync.Mutex
	formats map[string]Format
}

// Register adds a format. Formats call it from their init functions.
func Register(f Format) {
	registry.Lock()
	defer registry.Unlock()
	if registry.formats == nil {
		registry.formats = map[string]Format{}
	}
	if _, dup := registry.formats[f.Name]; dup {
		panic(fmt.Sprintf("parsers: format %q registered twice", f.Name))
	}
	registry.formats[f.Name] = f
}

// Lookup finds a registered format by name.
func Lookup(name string) (Format, bool) {
	registry.Lock()
	defer registry.Unlock()
	f, ok := registry.formats[name]
	return f, ok
}

// Names lists the registered formats, sorted.
func Names() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.formats))
	for n := range registry.formats {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Detect picks the format that claims most of the given lines (the first
// lines of a file). It fails when no format claims any line.
func Detect(lines [][]byte) (Format, bool) {
	registry.Lock()
	formats := make([]Format, 0, len(registry.formats))
	for _, f := range registry.formats {
		formats = append(formats, f)
	}
	registry.Unlock()
	slices.SortFunc(formats, func(a, b Format) int { return strings.Compare(a.Name, b.Name) })

	var best Format
	bestScore := 0
	for _, f := range formats {
		score := 0
		for _, l := range lines {
			score += f.Sniff(l)
		}
		if score > bestScore {
			best, bestScore = f, score
		}
	}
	return best, bestScore > 0
}
