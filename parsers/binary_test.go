package parsers

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestBinaryRoundTripsEveryParsedEvent encodes every event the testdata
// logs parse into, one after the other into one buffer as a host publishes
// them, and decodes them back equal (PID aside: it is not published).
func TestBinaryRoundTripsEveryParsedEvent(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.log")
	var want []Event
	var buf []byte
	for _, file := range files {
		name := filepath.Base(file)
		format, ok := Lookup(name[:strings.IndexAny(name, "-.")])
		if !ok {
			continue
		}
		p := format.New(Options{File: file, Reference: testReference})
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := int64(1); sc.Scan(); n++ {
			p.Parse(sc.Bytes(), n, func(e *Event) {
				c := *e
				c.PID = 0
				c.Time = c.Time.UTC()
				if !c.Date.IsZero() {
					c.Date = c.Date.UTC()
				}
				want = append(want, c)
				buf = e.AppendBinary(buf)
			})
		}
	}
	if len(want) < 50 {
		t.Fatalf("only %d events parsed from testdata", len(want))
	}
	var d Decoder
	n := 0
	if err := d.DecodeEach(buf, func(*Event) { n++ }); err != nil || n != len(want) {
		t.Fatalf("DecodeEach: %d events, %v; want %d", n, err, len(want))
	}
	rest := buf
	for i := range want {
		var got Event
		var err error
		if rest, err = d.Decode(rest, &got); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got.AppendJSON(nil), want[i].AppendJSON(nil))
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left over", len(rest))
	}
}

// TestBinaryRefusesDamage: every truncation of an encoding is an error,
// never a panic or a half-filled event taken for whole.
func TestBinaryRefusesDamage(t *testing.T) {
	e := Event{Time: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), MTA: "postfix", Kind: Accepted, Host: "mx1",
		QueueID: MakeQID([]byte("4F2A1B3C4D")), Sender: "a@example.org", HasSender: true,
		ClientIP: netip.MustParseAddr("2001:db8::1"), UID: -1, Size: 1234, NRcpt: 2, File: "/var/log/mail.log", Line: 7}
	b := e.AppendBinary(nil)
	var d Decoder
	for n := range len(b) {
		var got Event
		if _, err := d.Decode(b[:n], &got); err == nil {
			t.Fatalf("%d of %d bytes decoded without error", n, len(b))
		}
	}
	b[0] = 9
	if _, err := d.Decode(b, new(Event)); err == nil {
		t.Fatal("unknown version decoded")
	}
}

func FuzzDecodeBinary(f *testing.F) {
	e := Event{Time: time.Unix(1, 0), Kind: Rejected, Sender: "x", ClientIP: netip.MustParseAddr("192.0.2.1")}
	f.Add(e.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d Decoder
		for len(data) > 0 {
			var e Event
			rest, err := d.Decode(data, &e)
			if err != nil {
				return
			}
			if len(rest) >= len(data) {
				t.Fatal("no progress")
			}
			// What decodes encodes back to what was decoded.
			var again Event
			if _, err := d.Decode(e.AppendBinary(nil), &again); err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("re-encoding: %v\n%s\n%s", err, again.AppendJSON(nil), e.AppendJSON(nil))
			}
			data = rest
		}
	})
}
