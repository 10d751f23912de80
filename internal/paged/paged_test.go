package paged

import "testing"

// TestElementsStayWhereTheyWereWritten: every index reads back what was
// written there, across pages; once a page is full its elements never
// move (only the first page grows, as a slice, while it fills).
func TestElementsStayWhereTheyWereWritten(t *testing.T) {
	var s Slice[int64]
	var kept *int64
	for i := int64(0); i < 3*pageLen+5; i++ {
		idx := s.Add()
		if int64(idx) != i {
			t.Fatalf("Add returned %d, want %d", idx, i)
		}
		*s.At(idx) = i
		if i == pageLen { // the first page is full
			kept = s.At(10)
		}
	}
	if s.Len() != 3*pageLen+5 {
		t.Fatalf("Len = %d", s.Len())
	}
	if s.At(10) != kept {
		t.Fatal("an element of a full page moved as later pages were added")
	}
	for i := int32(0); i < s.Len(); i++ {
		if *s.At(i) != int64(i) {
			t.Fatalf("At(%d) = %d", i, *s.At(i))
		}
	}
}
