package report

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"
)

// hostileReport holds keys a sender chose: a spreadsheet formula, control
// characters, a bidirectional override and invalid UTF-8.
func hostileReport() *Report {
	keys := []string{"=HYPERLINK(\"http://evil.example\")@spam.example", "+1@x.example", "-2@x.example", "@x.example",
		"a\x1b[2Jb@x.example", "abc\u202egpj.exe@x.example", "bad\xffutf8@x.example", "tab\tstart@x.example"}
	r := &Report{Since: time.Unix(0, 0).UTC(), Until: time.Unix(3600, 0).UTC(), Totals: map[string]int64{},
		Top: map[string][]TopEntry{}, Advisor: map[string]Advice{}}
	for _, k := range keys {
		r.Top["sender"] = append(r.Top["sender"], TopEntry{Key: k, Messages: 1})
		r.Blocks = append(r.Blocks, Block{Time: r.Since, Rule: k, KeyType: "sender", Key: k, Reason: k})
	}
	return r
}

// unsafeIn reports the first rune of s that a terminal, spreadsheet or page
// must not get raw.
func unsafeIn(s string) (rune, bool) {
	for _, c := range s {
		if c != '\n' && c != '\r' && unsafeRune(c) {
			return c, true
		}
	}
	return 0, false
}

func TestCSVNeutralisesFormulasAndControls(t *testing.T) {
	r := hostileReport()
	for _, table := range []string{"top", "blocks"} {
		var b bytes.Buffer
		if err := r.CSV(&b, table); err != nil {
			t.Fatal(err)
		}
		if c, bad := unsafeIn(b.String()); bad {
			t.Errorf("%s: raw %U in the CSV", table, c)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows[1:] {
			for _, v := range row {
				if v != "" && strings.IndexByte("=+-@\t\r", v[0]) >= 0 {
					t.Errorf("%s: cell %q starts a formula", table, v)
				}
			}
		}
	}
}

func TestTextAndHTMLEscapeControls(t *testing.T) {
	r := hostileReport()
	var text, page bytes.Buffer
	if err := r.Text(&text); err != nil {
		t.Fatal(err)
	}
	if err := r.HTML(&page); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"text": text.String(), "html": page.String()} {
		if c, bad := unsafeIn(out); bad {
			t.Errorf("%s: raw %U in the report", name, c)
		}
		if !strings.Contains(out, `\u202e`) || !strings.Contains(out, `\x1b`) {
			t.Errorf("%s: the override and the escape are not shown as escapes", name)
		}
	}
	if strings.Contains(page.String(), "<HYPERLINK") || !strings.Contains(page.String(), "=HYPERLINK(&#34;http://evil.example&#34;)") {
		t.Errorf("html: the key is not escaped as text")
	}
}
