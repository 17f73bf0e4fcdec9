package netnstest

import (
	"net"
	"strings"
	"testing"
)

func TestNamespaceIsolatesPorts(t *testing.T) {
	ns := New(t, "10.77.0.1/32")
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", "10.77.0.1:12345")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := ns.Run(t, "ss", "-Htln")
	if !strings.Contains(out, "10.77.0.1:12345") {
		t.Errorf("listener not seen inside the namespace; ss says %q", out)
	}
	// The host has no such address, so the same bind fails there.
	if l, err := net.Listen("tcp", "10.77.0.1:12345"); err == nil {
		l.Close()
		t.Error("10.77.0.1 is bindable on the host: the namespace leaked")
	}
}
