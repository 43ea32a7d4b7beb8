package app

import "context"

// Kill cuts the process off from the rest of a deployment the way a killed
// process is cut off, for failure tests (apptest.Running.Kill): the NATS
// connection closes at once, without draining, so messages this process
// pulled stay unacknowledged until their ack wait ends and acknowledgements
// of work it just committed are lost; in-flight publishes fail; the HTTP
// listener closes. The caller then ends Run's context, and Run returns
// what the cut-off modules report. (A kill would also abort transactions
// in flight; here they may still commit, which a kill allows too: the
// commit may already have reached the server.)
func (a *App) Kill() {
	if a.nc != nil {
		a.nc.Close()
	}
	a.server.SetReady(false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()                   // do not wait for requests in flight
	_ = a.server.Shutdown(ctx) // closes the listener; the error is ctx's
}
