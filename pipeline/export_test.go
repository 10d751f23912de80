package pipeline

// SetMinFull sets how many windows rewritten make a full batch, for a
// test; it returns what puts it back.
func SetMinFull(n int) (undo func()) {
	old := minFull
	minFull = n
	return func() { minFull = old }
}
