package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/ports"
	"github.com/tuple-net/tuple/rules"
)

// fakePortsInputs is a namespace with range 40000-40009: a client with two
// connections to 10.0.0.1:80 and one to 10.0.0.2:443, and uid 65534 holding
// six ports bound without connecting.
func fakePortsInputs(context.Context, portsOptions) (*ports.Table, rules.Host, error) {
	h := rules.DefaultHost()
	h.EphemeralRange = inet.PortRange{Lo: 40000, Hi: 40009}
	conn := func(port uint16, dest string) ports.Entry {
		return ports.Entry{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.Connected,
			Local: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Remote: netip.MustParseAddrPort(dest),
			UID: 1000, Unknown: rules.FactPortOrigin}, Owners: []ports.Owner{{PID: 10, Comm: "client"}}}
	}
	e := []ports.Entry{conn(40000, "10.0.0.1:80"), conn(40001, "10.0.0.1:80"), conn(40000, "10.0.0.2:443")}
	for p := uint16(40002); p < 40008; p++ {
		e = append(e, ports.Entry{Socket: rules.Socket{Proto: inet.TCP, Family: inet.IPv4, State: rules.Bound,
			Local: netip.AddrPortFrom(netip.IPv4Unspecified(), p), UID: 65534}, Owners: []ports.Owner{{PID: 20, Comm: "hog"}}})
	}
	return &ports.Table{Entries: e}, h, nil
}

func runPortsTest(t *testing.T, o portsOptions) (string, error) {
	t.Helper()
	var out bytes.Buffer
	if o.read == nil {
		o.read = fakePortsInputs
	}
	if o.Top == 0 {
		o.Top = 10
	}
	if o.HogShare == 0 {
		o.HogShare = 50
	}
	err := runPorts(context.Background(), o, Streams{Out: &out, Err: &out})
	return out.String(), err
}

func TestPortsReport(t *testing.T) {
	out, err := runPortsTest(t, portsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ports.txt", out)
}

func TestPortsJSON(t *testing.T) {
	out, err := runPortsTest(t, portsOptions{JSON: true})
	if err != nil {
		t.Fatal(err)
	}
	var rep ports.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	golden(t, "ports.json", out)
}

func TestPortsBadInputAndFailure(t *testing.T) {
	for _, o := range []portsOptions{{Top: -1}, {HogShare: 150}, {PortRange: "9-1"}, {PortRange: "x"}} {
		_, err := runPortsTest(t, o)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitUsage {
			t.Errorf("%+v: got %v, want a usage error", o, err)
		}
	}
	failing := func(context.Context, portsOptions) (*ports.Table, rules.Host, error) {
		return nil, rules.Host{}, syscall.EPERM
	}
	if _, err := runPortsTest(t, portsOptions{read: failing}); !errors.Is(err, syscall.EPERM) {
		t.Errorf("read failure: got %v", err)
	}
	if code, _, errOut := run(t, "", "ports", "--top", "0"); code != 2 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("tuple ports --top 0: exit %d, %q", code, errOut)
	}
}

func TestPortsTopLimitsRows(t *testing.T) {
	out, err := runPortsTest(t, portsOptions{Top: 1})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ports-top1.txt", out)
}
