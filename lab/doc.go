// Package lab runs port-sharing scenarios for real and sets the kernel's
// answer beside the rules model's prediction.
//
// A scenario file (format in docs/lab.md) names sockets and the operations
// they attempt:
//
//	[two-reuseport-clients]
//	A socket tcp4 reuseport
//	A bind 127.0.0.1:12345
//	B socket tcp4 reuseport
//	B bind 127.0.0.1:@A        => ok
//
// Parse turns the text into Scenarios (pure, no system calls). Run executes
// one scenario in a fresh, unnamed network namespace owned by helper
// processes (the tuple binary re-executed as `tuple __lab-helper`), one per
// uid the scenario uses, and returns a Result per operation line: the
// expectation, what the kernel did and what rules.Predict said. The
// namespace exists only as long as its helpers, which die with the runner
// (Pdeathsig), so nothing is left behind after an interrupt.
//
// Running needs Linux and root (to create the namespace and switch uids);
// parsing and reporting work everywhere. The built-in library (Library,
// Builtin) is embedded from library/*.lab.
package lab
