// Package hostmodel turns the live host into the inputs of the rules model
// and turns the model's verdicts back into explanations a person can act on.
//
// It reads the namespace's port sysctls from /proc/sys (the procfs root is
// injectable, so tests point it at fixtures), the addresses the kernel
// treats as local (RTN_LOCAL routes for IPv4, non-tentative addresses for
// IPv6, over rtnetlink), and the socket table (socktab), converting each
// socket into a rules.Socket. The facts inet_diag lacks come from the
// kernel itself through sockfacts (a BPF socket iterator): reuse flags and
// IPV6_V6ONLY of every socket, whether a port was picked by connect(), and
// whether a TIME_WAIT entry saw timestamps. Without it (not root), options
// come from owners' descriptors where readable (pidfd_getfd) and the rest
// is marked unknown with a stated assumption; nothing is guessed silently.
//
// Explain takes a Plan (the new socket and its bind/listen/connect calls)
// and produces the report `tuple why` prints: each blocker with its
// four-tuple, state, options and owning processes, the reason in plain
// words, and fixes. Fixes are computed, not canned: each candidate change is
// run through the model again and only the ones it predicts to succeed are
// offered.
//
//	sit, err := hostmodel.Live(ctx, inet.TCP, "")
//	plan := hostmodel.Plan{Socket: s, Ops: []rules.Op{{Kind: rules.OpBind, Addr: a}, {Kind: rules.OpListen}}}
//	report := hostmodel.Explain(ctx, sit, plan)
//
// Reading the table needs no privileges; the BPF iterator, owners' options
// and other users' processes need root. A Situation is not safe for
// concurrent use (Explain caches an index and loads owners into it). The
// namespace read is the one of the calling OS thread.
package hostmodel
