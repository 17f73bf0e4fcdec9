// Package ports measures the ephemeral-port budget of a network namespace:
// for every (source address, destination address, destination port) in use
// by TCP sockets, how many ports a new connect() can still take, how many a
// bind(0) can take, and who holds them (per uid and per process).
//
// It exists because running out of ephemeral ports shows up only as rare
// EADDRNOTAVAIL / EADDRINUSE errors under load, and the budget depends on the
// full four-tuple: one connect-bound port serves many destinations, while a
// port taken by bind() or listen() is out of connect()'s pool for every
// destination (the kernel's __inet_hash_connect and inet_bind_conflict in
// net/ipv4/inet_hashtables.c and inet_connection_sock.c; the rules package
// models them).
//
// The input is explicit and pure: Budget(entries, host, options) works on
// sockets in the rules model's terms ([]Entry wrapping rules.Socket) and a
// rules.Host, so reports can be computed from a live socket table, a lab
// scenario or a test fixture alike. Where the table cannot tell whether a port
// came from bind() or connect() (rules.FactPortOrigin unknown), the free count
// is a range FreeMin..FreeMax, never a silent guess.
//
//	rep := ports.Budget(entries, host, ports.Options{HogShare: 0.5})
//	for _, d := range rep.Destinations {
//		fmt.Println(d.Source, "->", d.Dest, d.FreeMin, "..", d.FreeMax)
//	}
//
// Budget needs no privileges and is safe for concurrent use (it does not
// modify its inputs). Reading the live table (Snapshot) needs root to see
// every process's owners.
package ports
