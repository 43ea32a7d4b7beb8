package apptest

// Kill ends the process as a crash would, as far as the rest of a
// deployment can tell (app.App.Kill): no drain, no acknowledgement of
// work in flight. Its shutdown error is expected and ignored.
func (r *Running) Kill() {
	r.App.Kill()
	_ = r.Stop()
}
