package pipeline

// SetMinFull sets how many windows rewritten make a full batch, for a
// test; it returns what puts it back.
func SetMinFull(n int) (undo func()) {
	old := minFull
	minFull = n
	return func() { minFull = old }
}

// Record is the Executor's report of an action's outcome, for a test that
// chooses when it comes.
func (p *Pipeline) Record(id int64, action, status string) { p.record(id, action, status) }
