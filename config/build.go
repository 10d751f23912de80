package config

import (
	"fmt"
	"log/slog"
	"os/user"
	"slices"
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/parsers"
	"github.com/bombwatch/bombwatch/pipeline"
)

// Pipeline builds what the pipeline runs from a checked config: its rules
// and their actions, the one place where the file's words become the
// pipeline's.
func Pipeline(cfg *Config, log *slog.Logger) (pipeline.Setup, error) {
	named, err := BuildActions(cfg, log)
	if err != nil {
		return pipeline.Setup{}, err
	}
	s := pipeline.Setup{Actions: named, Ignore: append(slices.Clone(cfg.Ignore), mtaUIDs()...), Retention: time.Duration(cfg.Retention), MaxKeys: cfg.MaxKeys}
	for _, rc := range cfg.Rules {
		r := pipeline.Rule{Name: rc.Name, Key: rc.Key, Measure: rc.Measure, Of: rc.Of,
			Soft: rc.Soft, Hard: rc.Hard, Expire: time.Duration(rc.Expire), Block: time.Duration(rc.Block),
			Release: rc.Release == "below", Forgive: rc.Forgive,
			StripTag: rc.StripTag, StripBATV: rc.StripBATV, DecodeSRS: rc.DecodeSRS,
			OnClients: rc.Enforce == "clients" || rc.Enforce == "members", Actions: rc.Actions}
		if rc.Prefix != nil {
			r.Bits4, r.Bits6 = rc.Prefix.IPv4, rc.Prefix.IPv6
		}
		if rc.Adapt != nil {
			r.Adapt = &pipeline.Adapt{History: time.Duration(rc.Adapt.History), Factor: rc.Adapt.Factor, Max: rc.Adapt.Max}
		}
		if rc.Escalate != nil {
			r.Escalate = &pipeline.Escalate{Factor: rc.Escalate.Factor, Max: time.Duration(rc.Escalate.Max)}
		}
		for _, w := range rc.Windows {
			r.Windows = append(r.Windows, pipeline.Window{Limit: w.Limit, Per: time.Duration(w.Per)})
		}
		for _, k := range rc.On {
			kind, ok := parsers.ParseKind(k)
			if !ok {
				return pipeline.Setup{}, fmt.Errorf("%s: rules.%s.on: unknown event kind %q", cfg.File, rc.Name, k)
			}
			r.On = append(r.On, kind)
		}
		s.Rules = append(s.Rules, r)
	}
	return s, nil
}

// mtaUsers are the MTA's own users whose uid is on mail that is not a
// local user's: qmail's qmaild (qmail-smtpd's, on every message that came
// in over SMTP) and qmails (qmail-send's bounces).
var mtaUsers = []string{"qmaild", "qmails"}

// lookupUID finds a user's uid in the system's user database; tests
// replace it.
var lookupUID = func(name string) (string, bool) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", false
	}
	return u.Uid, true
}

// mtaUIDs are the ignore entries that keep the MTA's own users from being
// uid keys, so that a local-submission rule needs no site to know them.
func mtaUIDs() []string {
	var out []string
	for _, name := range mtaUsers {
		if uid, ok := lookupUID(name); ok {
			out = append(out, "uid:"+uid)
		}
	}
	return out
}

// NewPipeline builds the config's pipeline with opts.
func NewPipeline(cfg *Config, opts pipeline.Options) (*pipeline.Pipeline, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s, err := Pipeline(cfg, log)
	if err != nil {
		return nil, err
	}
	p, err := pipeline.New(s, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.File, err)
	}
	return p, nil
}

// BuildActions makes the config's named actions, and "log": for commands
// that act without a pipeline (bans).
func BuildActions(cfg *Config, log *slog.Logger) (map[string]actions.Action, error) {
	return buildActions(cfg, log)
}

// buildActions makes the config's named actions, and "log".
func buildActions(cfg *Config, log *slog.Logger) (map[string]actions.Action, error) {
	named := map[string]actions.Action{"log": &actions.Log{Logger: log}}
	guard := actions.NewGuard(cfg.Ignore)
	launcher := actions.HookLauncher()
	for name, a := range cfg.Actions {
		retries := actions.Retries(a.Retries)
		switch a.Type {
		case "log":
			named[name] = &actions.Log{ActionName: name, Logger: log}
		case "script":
			named[name] = &actions.Script{ActionName: name, Command: a.Command, UnblockCommand: a.UnblockCommand,
				Timeout: time.Duration(a.Timeout), Concurrency: a.Concurrency, DryRunOnly: a.DryRun, Launcher: launcher, Retries: retries, Logger: log}
		case "nft":
			named[name] = &actions.NFT{ActionName: name, Table: a.Table, Ports: a.Ports, Verdict: a.Verdict, Guard: guard,
				DryRunOnly: a.DryRun, Retries: retries, Logger: log}
		case "iptables":
			named[name] = &actions.IPTables{ActionName: name, Set: a.Set, Ports: a.Ports, Verdict: a.Verdict, Guard: guard,
				DryRunOnly: a.DryRun, Retries: retries, Logger: log}
		case "postfix_map", "sendmail_access", "qmail_badmailfrom":
			named[name] = &actions.Map{ActionName: name, Kind: a.Type, Path: a.Path, MapType: a.MapType, Reply: a.Reply, MTAConfig: a.MTAConfig,
				Guard: guard, DryRunOnly: a.DryRun, Retries: retries, Logger: log}
		case "mail":
			named[name] = &actions.Mail{ActionName: name, To: a.To, Sendmail: a.Sendmail, SMTP: a.SMTP, Period: time.Duration(a.Period),
				PerHour: a.PerHour, DryRunOnly: a.DryRun, Retries: retries, Logger: log}
		default:
			return nil, fmt.Errorf("%s: actions.%s: type %q is not implemented", cfg.File, name, a.Type)
		}
	}
	return named, nil
}
