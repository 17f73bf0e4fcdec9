package socktab

import (
	"testing"
)

func TestParseSockstat(t *testing.T) {
	v4 := "sockets: used 17\nTCP: inuse 12 orphan 0 tw 30 alloc 14 mem 134\nUDP: inuse 3 mem 0\nUDPLITE: inuse 9\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n"
	v6 := "TCP6: inuse 5\nUDP6: inuse 2\nUDPLITE6: inuse 7\nRAW6: inuse 1\n"
	s, err := ParseSockstat([]byte(v4), Sockstat{})
	if err != nil {
		t.Fatal(err)
	}
	s, err = ParseSockstat([]byte(v6), s)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Sockstat{TCP: 17, TimeWait: 30, UDP: 5}); s != want {
		t.Errorf("got %+v, want %+v", s, want)
	}
	if s.Sockets() != 52 {
		t.Errorf("Sockets() = %d, want 52", s.Sockets())
	}
	if _, err := ParseSockstat([]byte("TCP: inuse x tw 1\n"), Sockstat{}); err == nil {
		t.Error("bad count: no error")
	}
}

func FuzzParseSockstat(f *testing.F) {
	f.Add([]byte("TCP: inuse 12 orphan 0 tw 30 alloc 14 mem 134\nUDP: inuse 3 mem 0\n"))
	f.Add([]byte("TCP6: inuse 5\nUDP6: inuse -2\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSockstat(b, Sockstat{})
		if err == nil && (s.TCP < 0 || s.TimeWait < 0 || s.UDP < 0) {
			t.Fatalf("negative count %+v without error", s)
		}
	})
}

// TestEstimateFollowsStates: a dump of some states is sized for the
// sockets those states can hold: bound-only sockets are not in sockstat's
// counts, TIME_WAIT entries are counted apart from the tables' sockets, and
// FIN-WAIT-2 rows are mostly such entries (of that substate).
func TestEstimateFollowsStates(t *testing.T) {
	s := Sockstat{TCP: 40000, TimeWait: 300, UDP: 7}
	for _, tt := range []struct {
		states StateSet
		want   int
	}{
		{0, 40307},
		{AllStates, 40307},
		{1 << BoundInactive, 7},
		{1<<BoundInactive | 1<<TimeWait, 307},
		{1<<BoundInactive | 1<<TimeWait | 1<<FinWait2, 307}, // ports.Reader's timers
		{1 << FinWait2, 307},
		{1 << Established, 40007},
	} {
		if got := s.estimate(Query{TCP: true, UDP: true, States: tt.states}); got != tt.want {
			t.Errorf("states %b: estimate %d, want %d", tt.states, got, tt.want)
		}
	}
}
