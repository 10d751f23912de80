// Package paged is a slice that grows a page at a time, for the tables of
// a million entries that the parsers and the windows keep: such a table
// is never copied as it grows, nor faulted in again at each copy —
// growing a slice of a million keys' slots by append copied five times
// its size, and a queue table of pointerful entries took longer still
// (each copy made under the collector's write barriers).
package paged

const (
	pageBits = 12
	pageLen  = 1 << pageBits
)

// Slice is a slice of pages of 4,096 elements. The first page grows as a
// slice does, so that a table of a few entries costs a few elements. A
// pointer from At is good until the next Add.
type Slice[T any] struct {
	p [][]T
	n int32
}

// At is element i.
func (s *Slice[T]) At(i int32) *T { return &s.p[i>>pageBits][i&(pageLen-1)] }

// Add appends a zero element and returns its index.
func (s *Slice[T]) Add() int32 {
	var zero T
	switch last := len(s.p) - 1; {
	case last < 0:
		s.p = append(s.p, make([]T, 0, 8))
		s.p[0] = append(s.p[0], zero)
	case len(s.p[last]) < pageLen:
		s.p[last] = append(s.p[last], zero)
	default:
		page := make([]T, 1, pageLen)
		s.p = append(s.p, page)
	}
	s.n++
	return s.n - 1
}

// Len is how many elements were added.
func (s *Slice[T]) Len() int32 { return s.n }
