package parsers

import (
	"fmt"
	"testing"
	"unsafe"
)

// TestStrtabInternsRepeatsAndLetsAFloodThrough: repeated strings come back
// as one (no allocation each); a table that filled with distinct strings
// is bypassed for a while — converting costs less than looking up and
// inserting what never comes again — and then used again.
func TestStrtabInternsRepeatsAndLetsAFloodThrough(t *testing.T) {
	var tab strtab
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	first := tab.get([]byte("user@example.org"))
	if again := tab.get([]byte("user@example.org")); !same(first, again) || again != "user@example.org" {
		t.Fatal("a repeated string was not interned")
	}
	for i := range strtabMax {
		tab.get(fmt.Appendf(nil, "forged%d@example.org", i))
	}
	a, b := tab.get([]byte("user@example.org")), tab.get([]byte("user@example.org"))
	if same(a, b) || a != "user@example.org" {
		t.Errorf("after a flood of distinct strings: interned %v, value %q", same(a, b), a)
	}
	for range strtabBypass {
		tab.get([]byte("x"))
	}
	a, b = tab.get([]byte("user@example.org")), tab.get([]byte("user@example.org"))
	if !same(a, b) {
		t.Error("not interned again once the flood had passed")
	}
}
