// Command bombwatch watches mail-server logs and stops mail bombs.
//
// See README.md for the commands; `bombwatch help` lists them.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/bombwatch/bombwatch/config"
	"github.com/bombwatch/bombwatch/parsers"
	_ "github.com/bombwatch/bombwatch/postgres" // state: postgres://…
	"github.com/bombwatch/bombwatch/report"
	_ "github.com/bombwatch/bombwatch/sqlite" // the embedded store, state.Open's default
)

// Set by the Makefile with -ldflags -X.
var (
	version = "dev"
	commit  = ""
)

// Exit statuses of the public interface.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// reported is an error already written out: only its exit status is left.
type reported struct{ status int }

func (r reported) Error() string { return fmt.Sprintf("exit status %d", r.status) }

// usageError is bad usage or a bad config: exit status 2.
type usageError struct{ error }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "follow the configured logs, detect, act and lift blocks: the daemon", runRun},
		{"replay", "run the pipeline over finished logs, with their own time", runReplay},
		{"parse", "print the events found in logs, or --stats about them", runParse},
		{"report", "what happened, who sent it, what was blocked: text, JSON, CSV or HTML, for cron", runReport},
		{"explain", "why a key was blocked: the rule, the arithmetic and the log lines", runExplain},
		{"bans", "list, ban or unban by hand: what is enforced, not only the table", runBans},
		{"check", "validate a config and print it as it takes effect", runCheck},
		{"init", "write a config for this machine: its MTA's log, firewall and networks", runInit},
		{"generate", "write a synthetic log with bombs, for demos and benchmarks", runGenerate},
		{"bench", "measure the whole pipeline on synthetic logs: lines/s, MB/s, allocations, RSS", runBench},
		{"version", "print the version, commit and Go version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	if args[0] == "hook-exec" { // the script action's, not the admin's
		if err := runHookExec(args[1:], stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "bombwatch hook-exec: %v\n", err)
			return exitFailure
		}
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var ue usageError
		var rep reported
		switch {
		case err == nil:
			return exitOK
		case errors.As(err, &rep):
			return rep.status
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "bombwatch %s: %v\n", c.name, ue.error)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "bombwatch %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "bombwatch: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bombwatch COMMAND [flags] [args]")
	fmt.Fprintln(w)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`bombwatch COMMAND -h` lists a command's flags.")
}

// parseFlags parses flags wherever they stand among the arguments
// ("replay mail.log --json" as well as "replay --json mail.log") and returns
// the other arguments. "--" ends the flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest, nil
		}
		if args[0] == "--" {
			return append(rest, args[1:]...), nil
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

func newFlagSet(name string, stderr io.Writer, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: bombwatch %s %s\n", name, usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// checkLogs checks the LOG... arguments and --format of replay and parse.
func checkLogs(logs []string, format string) error {
	if len(logs) == 0 {
		return usagef("no log given (use - for standard input)")
	}
	if format != "auto" {
		if _, ok := parsers.Lookup(format); !ok {
			return usagef("unknown --format %q (auto, %v)", format, parsers.Names())
		}
	}
	return nil
}

// loadConfig reads -c FILE, or the built-in default without one.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return config.Default(), nil
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// newLogger logs to stderr; verbose shows Info lines (the log action's).
func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", stderr, "[--json]")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	c := commit
	if c == "" {
		if info, ok := debug.ReadBuildInfo(); ok {
			for _, s := range info.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if *asJSON {
		fmt.Fprintf(stdout, "{\"version\":%q,\"commit\":%q,\"go\":%q}\n", version, c, runtime.Version())
		return nil
	}
	fmt.Fprintf(stdout, "bombwatch %s (commit %s, %s %s/%s)\n", version, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func runCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr, "[-c FILE]")
	path := fs.String("c", "", "config `file` (default: the built-in config)")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	var cfg *config.Config
	if *path == "" {
		cfg = config.Default()
	} else if cfg, err = config.Load(*path); err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			// One line per problem, nothing else: easy for editors and scripts.
			for _, e := range errs {
				fmt.Fprintln(stderr, e.Error())
			}
			return reported{exitUsage}
		}
		return usageError{err}
	}
	out, err := cfg.YAML()
	if err != nil {
		return err
	}
	for _, w := range config.Warnings(cfg) {
		fmt.Fprintf(stderr, "%s: warning: %s\n", cfg.File, w)
	}
	fmt.Fprintf(stdout, "# effective config from %s\n", cfg.File)
	stdout.Write(out)
	return nil
}

// safeText quotes attacker-written strings for a terminal when they hold
// spaces, quotes or control characters.
func safeText(s string) string { return report.Quote(s) }
