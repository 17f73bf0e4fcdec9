package sockfacts

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/netnstest"
)

// TestReadGroupsAgainstKernel: two groups on one port (different
// addresses), members' indices in listen() order, a closed member's place
// taken by the last one as the kernel does, and the classic BPF program
// seen on the group that has it.
func TestReadGroupsAgainstKernel(t *testing.T) {
	requireBTF(t)
	ns := netnstest.New(t, "10.0.0.1/32")
	var got []Member
	var cookies [4]uint64
	err := ns.Do(func() error {
		rp := map[int]int{unix.SO_REUSEPORT: 1}
		var fds []int
		for i := 0; i < 4; i++ {
			fd := sock(t, unix.AF_INET, unix.SOCK_STREAM, rp, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 7100})
			if err := unix.Listen(fd, 8); err != nil {
				return err
			}
			fds = append(fds, fd)
		}
		// A second group: same port, another address, one member.
		other := sock(t, unix.AF_INET, unix.SOCK_STREAM, rp, &unix.SockaddrInet4{Addr: [4]byte{10, 0, 0, 1}, Port: 7100})
		if err := unix.Listen(other, 8); err != nil {
			return err
		}
		// Member 1 closes: the kernel moves the last member (3) into
		// its place.
		unix.Close(fds[1])
		// Classic BPF on the first group: ld cpu; ret a.
		f := []unix.SockFilter{{Code: 0x20, K: 0xfffff024}, {Code: 0x16}}
		if err := unix.SetsockoptSockFprog(fds[0], unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: 2, Filter: &f[0]}); err != nil {
			return err
		}
		for i, fd := range fds {
			if i == 1 {
				continue
			}
			c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
			if err != nil {
				return err
			}
			cookies[i] = c
		}
		var err error
		got, err = ReadGroups(inet.TCP)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	byCookie := map[uint64]Member{}
	var others []Member
	for _, m := range got {
		if m.Local.Addr().String() == "10.0.0.1" {
			others = append(others, m)
			continue
		}
		byCookie[m.Cookie] = m
	}
	want := map[int]int{0: 0, 2: 2, 3: 1} // listen order -> index after member 1 closed
	for i, idx := range want {
		m, ok := byCookie[cookies[i]]
		if !ok {
			t.Fatalf("member %d (cookie %d) missing from %+v", i, cookies[i], got)
		}
		if m.Index != idx || m.Members != 3 || m.Local.String() != "127.0.0.1:7100" || m.State != 10 {
			t.Errorf("member %d: %+v; want index %d of 3 members", i, m, idx)
		}
		if !m.Attached || m.Prog.Kind() != "classic BPF" || m.Prog.ID != 0 {
			t.Errorf("member %d: program %+v attached=%v; want classic BPF", i, m.Prog, m.Attached)
		}
		if m.GroupID != byCookie[cookies[0]].GroupID {
			t.Errorf("member %d: group %d, member 0's is %d", i, m.GroupID, byCookie[cookies[0]].GroupID)
		}
	}
	if len(others) != 1 || others[0].Index != 0 || others[0].Members != 1 || others[0].Attached || others[0].GroupID == byCookie[cookies[0]].GroupID {
		t.Errorf("the 10.0.0.1 group: %+v; want one member at index 0, no program, its own id", others)
	}
}

func FuzzParseGroupRecords(f *testing.F) {
	rec := make([]byte, grpLen)
	rec[grpFamily] = 2
	f.Add(rec)
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := parseGroupRecords(b, inet.TCP)
		if err == nil && len(ms) > len(b)/grpLen {
			t.Fatalf("%d members from %d bytes", len(ms), len(b))
		}
	})
}
