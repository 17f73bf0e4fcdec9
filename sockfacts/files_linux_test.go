package sockfacts

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSocketFilesMatchesProc: the iterator lists exactly the socket
// descriptors /proc/self/fd shows for this process (TCP, UDP and a Unix
// socket pair among them, and none of its other files), with the inode
// fstat reports.
func TestSocketFilesMatchesProc(t *testing.T) {
	requireBTF(t)
	tcp := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	udp := sock(t, unix.AF_INET6, unix.SOCK_DGRAM, nil, nil)
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	f, err := os.CreateTemp(t.TempDir(), "not-a-socket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	files, err := SocketFiles()
	if err != nil {
		t.Fatalf("SocketFiles: %v", err)
	}
	got := map[int]uint64{}
	for _, fl := range files {
		if int(fl.PID) == os.Getpid() {
			if _, dup := got[int(fl.FD)]; dup {
				t.Errorf("fd %d listed twice", fl.FD)
			}
			got[int(fl.FD)] = fl.Inode
		}
	}
	want := map[int]uint64{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		ino, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
		want[fd] = ino
	}
	for _, fd := range []int{tcp, udp, pair[0], pair[1]} {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if got[fd] != st.Ino {
			t.Errorf("fd %d: iterator inode %d, fstat %d", fd, got[fd], st.Ino)
		}
	}
	if _, listed := got[int(f.Fd())]; listed {
		t.Errorf("fd %d (a regular file) listed as a socket", f.Fd())
	}
	// The descriptors /proc shows after the iterator ran include its own
	// (bpf link and program) only if they were sockets, which they are not.
	for fd, ino := range want {
		if got[fd] != ino {
			t.Errorf("fd %d: /proc says socket:[%d], iterator %d", fd, ino, got[fd])
		}
	}
	for fd, ino := range got {
		if want[fd] != ino {
			t.Errorf("fd %d: iterator says socket %d, /proc %d", fd, ino, want[fd])
		}
	}
	t.Logf("%d socket descriptors on the host, %d of this process", len(files), len(got))
}
