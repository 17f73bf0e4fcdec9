package lab

import (
	"net/netip"
	"strings"
	"testing"
)

// A /proc/net/tcp6 excerpt: a listener on [::]:8080 and a TIME_WAIT between
// v4-mapped 127.0.0.1 ports (as the kernel prints them on x86-64).
const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
`

const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100000A:9C40 0100000A:0050 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
`

func TestParseProcNetTCP(t *testing.T) {
	got, err := parseProcNetTCP(strings.NewReader(procTCP6))
	if err != nil {
		t.Fatal(err)
	}
	want := []procEntry{
		{Local: netip.MustParseAddrPort("[::]:8080"), Remote: netip.MustParseAddrPort("[::]:0"), State: tcpListen},
		{Local: netip.MustParseAddrPort("[::ffff:127.0.0.1]:40000"), Remote: netip.MustParseAddrPort("[::ffff:127.0.0.1]:80"), State: tcpTimeWait},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("tcp6: got %+v, want %+v", got, want)
	}
	got, err = parseProcNetTCP(strings.NewReader(procTCP))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Local != netip.MustParseAddrPort("10.0.0.1:40000") || got[0].Remote != netip.MustParseAddrPort("10.0.0.1:80") {
		t.Errorf("tcp: got %+v", got)
	}
	for _, bad := range []string{"h\n 0: 0100007F\n", "h\n 0: 0100007:0050 0100007F:0050 06\n", "h\n 0: 0100007F:XYZ 0100007F:0050 06\n"} {
		if _, err := parseProcNetTCP(strings.NewReader(bad)); err == nil {
			t.Errorf("parseProcNetTCP(%q): no error", bad)
		}
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(procTCP)
	f.Add(procTCP6)
	f.Fuzz(func(t *testing.T, text string) {
		entries, err := parseProcNetTCP(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, e := range entries {
			if !e.Local.IsValid() || !e.Remote.IsValid() || e.State < 0 || e.State > 255 {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
