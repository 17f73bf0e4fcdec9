package cli

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/reusegroup"
	"github.com/tuple-net/tuple/sockfacts"
	"github.com/tuple-net/tuple/socktab"
)

// TestAppendGroups renders a known group (indices, program id, queues) and
// one read without the kernel's records (indices unknown, with the reason).
func TestAppendGroups(t *testing.T) {
	sock := func(fd int, recvQ uint32) *socktab.Socket {
		return &socktab.Socket{Proto: inet.TCP, State: socktab.Listen, UID: 1000, RecvQ: recvQ, SendQ: 511,
			Owners: []socktab.Owner{{PID: 42, Comm: "nginx", FD: fd}}}
	}
	groups := []reusegroup.Group{
		{Proto: inet.TCP, Local: netip.MustParseAddrPort("0.0.0.0:80"), UID: 1000, Known: true, ID: 7, Size: 2,
			Prog:    &sockfacts.Program{Type: 21, AttachType: 40, ID: 93},
			Members: []reusegroup.Member{{Socket: sock(6, 0), Index: 0}, {Socket: sock(7, 12), Index: 1}}},
		{Proto: inet.TCP, Local: netip.MustParseAddrPort("[::]:443"), UID: 0, Size: 1,
			Reason:  "unknown: BPF socket iterator not available: loading it needs CAP_BPF and CAP_PERFMON (root)",
			Members: []reusegroup.Member{{Socket: &socktab.Socket{Proto: inet.TCP, SendQ: 4096}, Index: -1}}},
	}
	want := `reuseport group tcp 0.0.0.0:80 uid=1000: 2 member(s), id 7, program sk_reuseport/migrate id 93
  index 0: nginx(pid=42,fd=6) uid=1000 accept-queue=0/511
  index 1: nginx(pid=42,fd=7) uid=1000 accept-queue=12/511
reuseport group tcp [::]:443 uid=0: 1 member(s); index, id and program unknown: BPF socket iterator not available: loading it needs CAP_BPF and CAP_PERFMON (root)
  index ?: no process uid=0 accept-queue=0/4096
`
	if d := cmp.Diff(want, string(appendGroups(nil, groups))); d != "" {
		t.Errorf("-want +got\n%s", d)
	}
}
