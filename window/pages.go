package window

// pages is a slice that grows a page at a time: a million elements are
// never copied as the slice grows, nor faulted in again at each copy —
// growing a slice of a million keys' slots by append copied five times
// its size. The first page grows as a slice does, so that a window of a
// few keys costs a few elements. A pointer from at is good until the
// next add.
type pages[T any] struct {
	p [][]T
	n int32
}

const (
	pageBits = 12
	pageLen  = 1 << pageBits
)

// at is element i.
func (s *pages[T]) at(i int32) *T { return &s.p[i>>pageBits][i&(pageLen-1)] }

// add appends a zero element and returns its index.
func (s *pages[T]) add() int32 {
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

// len is how many elements were added.
func (s *pages[T]) len() int32 { return s.n }
