package pipeline

import (
	"time"

	"github.com/bombwatch/bombwatch/actions"
	"github.com/bombwatch/bombwatch/parsers"
)

// Detection is a block or unblock as `replay --json` prints it: the fields
// of the public interface, plus the log line that crossed the limit.
type Detection struct {
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	Rule    string    `json:"rule"`
	KeyType string    `json:"key_type"`
	Key     string    `json:"key"`
	Value   float64   `json:"value"`
	Limit   float64   `json:"limit"`
	// EffectiveLimit is, for a rule with adapt, the limit the key was
	// given from its own history, which it crossed.
	EffectiveLimit float64    `json:"effective_limit,omitempty"`
	Window         string     `json:"window"`
	Until          *time.Time `json:"until,omitempty"`
	Actions        []string   `json:"actions"`
	Executed       bool       `json:"executed"`
	// Reason is why an unblock happened: "expired" or "unban".
	Reason string `json:"reason,omitempty"`
	// File and Line are the log line of the event that crossed the limit.
	File string `json:"file,omitempty"`
	Line int64  `json:"line,omitempty"`
	// Members are the client addresses the firewall and map actions act
	// on, for a rule that enforces on clients: at a block, the client that
	// crossed the limit; at an unblock, every client added meanwhile.
	Members []string `json:"members,omitempty"`
	// Host is where the event that crossed the limit was seen (see
	// state.Block.Host).
	Host string `json:"host,omitempty"`
}

func newDetection(d actions.Detection, acts []actions.Action, executed bool, reason string, e *parsers.Event) Detection {
	out := Detection{
		Event: d.Event, Time: d.Time.UTC(), Rule: d.Rule, KeyType: d.KeyType, Key: d.Key,
		Value: d.Value, Limit: d.Limit, Window: d.Window.String(),
		Actions: make([]string, len(acts)), Executed: executed, Reason: reason,
	}
	if !d.Until.IsZero() {
		u := d.Until.UTC()
		out.Until = &u
	}
	for i, a := range acts {
		out.Actions[i] = a.Name()
	}
	if e != nil {
		out.File, out.Line = e.File, e.Line
	}
	return out
}
