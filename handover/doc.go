// Package handover moves a server's listening sockets to its successor
// process, so a restart loses no connection.
//
// The running process Listens on a Unix socket path and Serves there. A new
// process started later calls Take on the same path: it receives the
// listening sockets themselves (SCM_RIGHTS), so every connection queued on
// them, and every handshake in progress, is still there; it starts
// accepting, then calls Ready. The old process then stops accepting (its
// stop function closes its copies; the sockets stay open in the successor),
// frees the path and finishes the connections it already accepted. The
// successor Listens on the path in turn, ready for the next restart.
//
// Unlike closing a SO_REUSEPORT member (whose queue the kernel resets unless
// it migrates it), nothing is ever closed in the kernel: no connection is
// refused, reset or lost. Only processes that can connect to the path (file
// permissions) can take the sockets.
//
// Example, the server's whole restart logic:
//
//	var lns []net.Listener
//	if t, err := handover.Take(ctx, path); err == nil {
//		lns = t.Listeners
//		defer t.Ready(ctx) // after the accept loops started
//	} else if errors.Is(err, handover.ErrNoOffer) {
//		lns = openListeners()
//	}
//	o, err := handover.Listen(path)
//	go o.Serve(ctx, lns, stopAccepting)
//
// Linux and other Unix systems; elsewhere the functions fail with an error
// wrapping ErrNotSupported.
package handover
