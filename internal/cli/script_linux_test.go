package cli

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tuple-net/tuple/internal/netnstest"
	"github.com/tuple-net/tuple/internal/testenv"
)

// TestScriptSSFilter runs testdata/script/ss_filter.txtar: tuple ls against
// ss itself on one namespace, filter expression by filter expression.
func TestScriptSSFilter(t *testing.T) {
	ns := netnstest.New(t, "10.0.0.1/32", "fd00::1/128")
	if _, err := exec.LookPath("ss"); err != nil {
		testenv.Missing(t, "needs ss from iproute2 (.ci/run installs it)")
	}
	bin := tupleBinary(t)
	var (
		mu      sync.Mutex
		closers []func()
	)
	onClose := func(c func()) {
		mu.Lock()
		closers = append(closers, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range slices.Backward(closers) {
			c()
		}
	})
	closedPort := 0
	err := ns.Do(func() error {
		listen := func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			if err != nil {
				return nil, err
			}
			onClose(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					onClose(func() { c.Close() })
				}
			}()
			return l, nil
		}
		dial := func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err == nil {
				onClose(func() { c.Close() })
			}
			return c, err
		}
		if _, err := listen("tcp4", "10.0.0.1:8080"); err != nil {
			return err
		}
		if _, err := listen("tcp6", "[fd00::1]:8080"); err != nil {
			return err
		}
		if _, err := listen("tcp4", "127.0.0.1:22"); err != nil {
			return err
		}
		for _, a := range []string{"10.0.0.1:8080", "10.0.0.1:8080", "10.0.0.1:8080", "[fd00::1]:8080", "127.0.0.1:22"} {
			if _, err := dial("tcp", a); err != nil {
				return err
			}
		}
		// The client closes first (the server's end is kept open).
		c, err := net.Dial("tcp4", "127.0.0.1:22")
		if err != nil {
			return err
		}
		closedPort = c.LocalAddr().(*net.TCPAddr).Port
		c.Close()
		u, err := net.ListenPacket("udp4", "10.0.0.1:53")
		if err != nil {
			return err
		}
		onClose(func() { u.Close() })
		if _, err := dial("udp4", "10.0.0.1:53"); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Both commands read the kernel's table: wait until the close has
	// reached it (the client's end leaves ESTABLISHED).
	waitFor(t, "the closed client to leave ESTABLISHED", func() bool {
		return strings.TrimSpace(ns.Run(t, "ss", "-Htan", "state", "established", fmt.Sprintf("sport = :%d", closedPort))) == ""
	})
	dir := t.TempDir()
	if err := os.Symlink(bin, filepath.Join(dir, "tuple")); err != nil {
		t.Fatal(err)
	}
	// Commands run in the namespace through a wrapper named like them.
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("NS", ns.Name)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"sscompare": func(ts *testscript.TestScript, neg bool, args []string) {
				flags, expr := args[:1], args[1:]
				ssOut := inNS(ts, ns.Name, append(append([]string{"ss", "-Hn"}, flags...), expr...)...)
				tupleOut := inNS(ts, ns.Name, append(append([]string{"tuple", "ls", "-n"}, flags...), expr...)...)
				want, got := ssRows(ssOut, false), ssRows(tupleOut, true)
				if slices.Equal(want, got) == neg {
					ts.Fatalf("%s: ss lists %d sockets, tuple ls %d\nss:\n%s\ntuple ls:\n%s", strings.Join(args, " "), len(want), len(got),
						strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
				if len(want) == 0 {
					ts.Logf("%s: no sockets (both)", strings.Join(args, " "))
				}
			},
		},
	})
}

// inNS runs a command in the namespace and returns its output.
func inNS(ts *testscript.TestScript, ns string, args ...string) string {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+ts.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		ts.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ssRows turns ss -Hn or tuple ls -n output into sorted "LOCAL PEER" rows,
// the last two columns of both (tuple's has a header; ss drops its State
// column when the filter names one state).
func ssRows(out string, tuple bool) []string {
	var rows []string
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if (tuple && i == 0) || len(f) < 4 {
			continue
		}
		rows = append(rows, f[len(f)-2]+" "+f[len(f)-1])
	}
	slices.Sort(rows)
	return rows
}
