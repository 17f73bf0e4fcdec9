package socktab

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tuple-net/tuple/inet"
)

// Captured from a little-endian machine (trailing columns shortened).
const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 000000FD000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0035 0000000000000000FFFF00000100007F:14E9 01 00000010:00000020 02:0000000A 00000000   101        0 778 1 0000000000000000 20 4 0 10 -1
`

func TestParseProcNet(t *testing.T) {
	got, err := parseProcNet([]byte(procNetTCP), inet.TCP, inet.IPv4, binary.LittleEndian, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = parseProcNet([]byte(procNetTCP6), inet.TCP, inet.IPv6, binary.LittleEndian, got)
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := Bool{Reason: reasonIPv4}, Bool{Reason: reasonProcfs}
	want := []Socket{
		{Proto: inet.TCP, Family: inet.IPv4, State: Listen, Local: ap("127.0.0.1:8080"), Remote: ap("0.0.0.0:0"), UID: 1000, Inode: 51234, RecvQ: 2, V6Only: v4},
		{Proto: inet.TCP, Family: inet.IPv4, State: TimeWait, Local: ap("127.0.0.1:40000"), Remote: ap("127.0.0.1:8080"), TimeLeft: 60 * time.Second, V6Only: v4},
		{Proto: inet.TCP, Family: inet.IPv6, State: Listen, Local: ap("[fd00::1]:443"), Remote: ap("[::]:0"), Inode: 777, V6Only: v6},
		{Proto: inet.TCP, Family: inet.IPv6, State: Established, Local: ap("[::ffff:127.0.0.1]:53"), Remote: ap("[::ffff:127.0.0.1]:5353"),
			UID: 101, Inode: 778, SendQ: 16, RecvQ: 32, TimeLeft: 100 * time.Millisecond, V6Only: v6},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("-want +got:\n%s", diff)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParseProcNetRejectsBadLines(t *testing.T) {
	header := "  sl  local_address rem_address   st ...\n"
	for _, line := range []string{
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0\n",    // too few fields
		"   0: 0100007F1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n",   // no colon
		"   0: 0100007F:1F90 00000000:0000 ZZ 00000000:00000000 00:00000000 00000000 0 0 1\n",  // state
		"   0: 0100007F:1F90 00000000:0000 0A 0000000000000000 00:00000000 00000000 0 0 1\n",   // queues
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 1\n",  // uid
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 -1\n", // inode
		"   0: 0100007F:11F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n", // port
	} {
		if _, err := parseProcNet([]byte(header+line), inet.TCP, inet.IPv4, binary.LittleEndian, nil); err == nil {
			t.Errorf("no error for %q", line)
		}
	}
}

func FuzzParseProcNet(f *testing.F) {
	f.Add([]byte(procNetTCP), false)
	f.Add([]byte(procNetTCP6), true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		fam := inet.IPv4
		if v6 {
			fam = inet.IPv6
		}
		socks, err := parseProcNet(b, inet.UDP, fam, binary.LittleEndian, nil)
		if err != nil {
			return
		}
		for _, s := range socks {
			if s.Local.Addr().Is4() != (fam == inet.IPv4) {
				t.Fatalf("family %d socket with address %v", fam, s.Local)
			}
		}
	})
}
