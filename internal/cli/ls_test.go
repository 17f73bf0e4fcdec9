package cli

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/socktab"
)

func TestLsWhoBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"ls", "--state", "foo"},
		{"ls", "--sport", "70000"},
		{"ls", "--uid", "-5"},
		{"ls", "--pid", "-1"},
		{"ls", "extra"},
		{"who"},
		{"who", "0"},
		{"who", "abc"},
		{"who", "1.2.3.4"},
		{"who", "70000"},
		{"who", "300.1.1.1:80"},
		{"who", "80", "81"},
	} {
		code, _, errOut := run(t, "", args...)
		if code != 2 {
			t.Errorf("tuple %v: exit %d, want 2", args, code)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 || errOut == "" {
			t.Errorf("tuple %v: want one error line, got %q", args, errOut)
		}
	}
}

func TestParseWhoTarget(t *testing.T) {
	for in, want := range map[string]string{"80": ":80", ":80": ":80", "127.0.0.1:80": "127.0.0.1:80", "[::1]:53": "[::1]:53"} {
		addr, port, err := parseWhoTarget(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		got := ":" + strconv.Itoa(int(port))
		if addr.IsValid() {
			got = netip.AddrPortFrom(addr, port).String()
		}
		if got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func known(v bool) socktab.Bool { return socktab.Bool{Known: true, Value: v} }

func sock(proto inet.Proto, state socktab.State, uid uint32, ra, rp socktab.Bool) socktab.Socket {
	return socktab.Socket{Proto: proto, State: state, UID: uid, Local: netip.MustParseAddrPort("127.0.0.1:80"),
		Options: socktab.Options{ReuseAddr: ra, ReusePort: rp}}
}

func TestShareVerdict(t *testing.T) {
	unknown := socktab.Bool{Reason: "no owning process: TIME_WAIT sockets belong to the kernel"}
	T, U := inet.TCP, inet.UDP
	tests := []struct {
		name  string
		proto inet.Proto
		socks []socktab.Socket
		want  string
	}{
		{"free", T, nil, "free"},
		{"other proto only", T, []socktab.Socket{sock(U, socktab.Close, 0, known(false), known(false))}, "free"},
		{"listener without reuseport", T, []socktab.Socket{sock(T, socktab.Listen, 0, known(true), known(false))}, "none"},
		{"reuseport listeners same uid", T, []socktab.Socket{sock(T, socktab.Listen, 7, known(true), known(true)), sock(T, socktab.Listen, 7, known(false), known(true))}, "reuseport"},
		{"reuseport listeners other uids", T, []socktab.Socket{sock(T, socktab.Listen, 7, known(false), known(true)), sock(T, socktab.Listen, 8, known(false), known(true))}, "none"},
		{"bound with reuseaddr", T, []socktab.Socket{sock(T, socktab.BoundInactive, 0, known(true), known(false))}, "reuseaddr"},
		{"bound with both", T, []socktab.Socket{sock(T, socktab.Established, 3, known(true), known(true))}, "reuseport-or-reuseaddr"},
		{"bound plain", T, []socktab.Socket{sock(T, socktab.BoundInactive, 0, known(false), known(false))}, "none"},
		{"time-wait unknown", T, []socktab.Socket{sock(T, socktab.TimeWait, 0, unknown, unknown)}, "unknown"},
		{"plain listener decides despite unknown time-wait", T, []socktab.Socket{sock(T, socktab.TimeWait, 0, unknown, unknown), sock(T, socktab.Listen, 0, known(true), known(false))}, "none"},
		{"request sockets own nothing", T, []socktab.Socket{sock(T, socktab.NewSynRecv, 0, unknown, unknown)}, "free"},
		{"udp reuseaddr", U, []socktab.Socket{sock(U, socktab.Close, 0, known(true), known(false)), sock(U, socktab.Established, 5, known(true), known(false))}, "reuseaddr"},
		{"udp plain", U, []socktab.Socket{sock(U, socktab.Close, 0, known(false), known(false))}, "none"},
	}
	for _, tt := range tests {
		if got := shareVerdict(tt.proto, tt.socks); got.Verdict != tt.want {
			t.Errorf("%s: %s (%s), want %s", tt.name, got.Verdict, got.Text, tt.want)
		}
	}
}

func TestShareVerdictConnectHint(t *testing.T) {
	T := inet.TCP
	conn := shareVerdict(T, []socktab.Socket{sock(T, socktab.Established, 0, known(false), known(false))})
	if conn.Verdict != "none" || !strings.Contains(conn.Text, "connect() without bind()") {
		t.Errorf("connected holder: %+v", conn)
	}
	ln := shareVerdict(T, []socktab.Socket{sock(T, socktab.Listen, 0, known(false), known(false))})
	if strings.Contains(ln.Text, "connect()") {
		t.Errorf("listener holder: %+v", ln)
	}
}
