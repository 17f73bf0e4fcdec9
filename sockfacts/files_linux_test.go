package sockfacts

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"

	"github.com/tuple-net/tuple/internal/kversion"
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

// TestRawBTFMatchesLoader: the raw BTF scan finds every field the
// programs read where cilium/ebpf's decoder does (bitfields, members of
// anonymous unions, sizes, socket_alloc's inode), and the functions the
// iterators attach to.
func TestRawBTFMatchesLoader(t *testing.T) {
	requireBTF(t)
	raw, err := readKernelBTF()
	if err != nil {
		t.Fatal(err)
	}
	x, err := parseBTF(raw)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := kernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	rawSock, rerr := loadLayout(x)
	sock, lerr := loadLayout(loaderBTF{spec})
	if rerr != nil || lerr != nil || *rawSock != *sock {
		t.Errorf("socket layout: raw %+v (%v), loader %+v (%v)", rawSock, rerr, sock, lerr)
	}
	rawFiles, rerr := rawFilesLayout(x)
	files, lerr := loadFilesLayout()
	if rerr != nil || lerr != nil || *rawFiles != *files {
		t.Errorf("task_file layout: raw %+v (%v), loader %+v (%v)", rawFiles, rerr, files, lerr)
	}
	if rawSock != nil {
		rawGroups, rerr := loadGroupLayout(rawSock, x)
		groups, lerr := kernelGroupLayout()
		if rerr != nil || lerr != nil {
			t.Errorf("group layout: raw %v, loader %v", rerr, lerr)
		} else if a, b := *rawGroups, *groups; *a.layout != *b.layout || func() bool { a.layout, b.layout = nil, nil; return a != b }() {
			t.Errorf("group layout: raw %+v, loader %+v", a, b)
		}
	}
	if sock != nil && sock.sockIno == 0 {
		t.Log("kernel BTF has no socket_alloc: inodes are read through the file")
	}
	if _, err := x.field("task_struct", "no_such_member", 0); err == nil {
		t.Error("a missing member found")
	}
	if _, err := x.field("inode", "i_ino", 4); err == nil {
		t.Error("i_ino accepted as 4 bytes")
	}
	k, err := rawKernel()
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{"tcp", "udp", "task_file"} {
		var fn *btf.Func
		if err := spec.TypeByName("bpf_iter_"+target, &fn); err != nil {
			t.Fatal(err)
		}
		want, err := spec.TypeID(fn)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := x.find(btfFunc, "bpf_iter_"+target); err != nil || got != uint32(want) || k.targets[target] != got {
			t.Errorf("bpf_iter_%s: raw id %d (%v), rawKernel's %d, loader %d", target, got, err, k.targets[target], want)
		}
	}
}

// TestRawTaskFilesMatchesLoader: the program loaded with bpf(2) directly
// lists this process's socket descriptors as the loader's does.
func TestRawTaskFilesMatchesLoader(t *testing.T) {
	requireBTF(t)
	a := sock(t, unix.AF_INET, unix.SOCK_STREAM, nil, nil)
	b := sock(t, unix.AF_INET6, unix.SOCK_DGRAM, nil, nil)
	k, err := rawKernel()
	if err != nil {
		t.Fatal(err)
	}
	if k.filesErr != nil {
		t.Fatal(k.filesErr)
	}
	lnk, err := rawIterLink(taskFileProgName, filesProgram(k.files), k.targets["task_file"])
	if err != nil {
		t.Fatal(err)
	}
	defer lnk.Close()
	rawFiles, err := readFiles(lnk, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := loadFilesLayout()
	if err != nil {
		t.Fatal(err)
	}
	it, err := loadIter("tuple_task_file", "task_file", filesProgram(l))
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	loaded, err := readFiles(it, nil)
	if err != nil {
		t.Fatal(err)
	}
	mine := func(fs []File) map[int32]uint64 {
		m := map[int32]uint64{}
		for _, f := range fs {
			if int(f.PID) == os.Getpid() {
				m[f.FD] = f.Inode
			}
		}
		return m
	}
	got, want := mine(rawFiles), mine(loaded)
	if len(got) != len(want) || got[int32(a)] == 0 || got[int32(b)] == 0 {
		t.Fatalf("raw %v, loader %v (sockets at fds %d, %d)", got, want, a, b)
	}
	for fd, ino := range want {
		if got[fd] != ino {
			t.Errorf("fd %d: raw inode %d, loader %d", fd, got[fd], ino)
		}
	}
}

// TestKernelBTFBlob: the BTF copied out with bpf(2), or mapped, is the
// file's.
func TestKernelBTFBlob(t *testing.T) {
	requireBTF(t)
	blob, err := kernelBTFBlob()
	if errors.Is(err, unix.ENOENT) && !kversion.AtLeast(5, 11) {
		// No BTF object at all: older kernels (5.10) do not list their
		// own BTF through bpf(2), and rawKernel reads the file instead.
		t.Skipf("the kernel's BTF is no bpf(2) object here (%v): the file is read", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	file, err := readKernelBTF()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(blob, file) {
		t.Errorf("bpf(2) gave %d bytes, %s %d, not the same", len(blob), btfPath, len(file))
	}
	// Mapped where the kernel allows it (Linux 6.16 on).
	if m, err := mapKernelBTF(); err != nil {
		t.Logf("%s not mapped: %v", btfPath, err)
	} else {
		if !bytes.Equal(m, file) {
			t.Errorf("the mapping has %d bytes, %s %d, not the same", len(m), btfPath, len(file))
		}
		if err := unix.Munmap(m); err != nil {
			t.Error(err)
		}
	}
}

// FuzzParseFileNr: the kernel's format gives its first count back;
// anything else gives a count not below 0, and nothing panics.
func FuzzParseFileNr(f *testing.F) {
	f.Add([]byte("x\t0\t1\n"), uint32(100445), uint32(0))
	f.Add([]byte("-5\t0\t1"), uint32(0), uint32(7))
	f.Add([]byte(""), uint32(1), uint32(2))
	f.Fuzz(func(t *testing.T, b []byte, n, free uint32) {
		if got := parseFileNr(b); got < 0 {
			t.Fatalf("%q: %d", b, got)
		}
		line := strconv.Itoa(int(n)) + "\t" + strconv.Itoa(int(free)) + "\t9223372036854775807\n"
		if got := parseFileNr([]byte(line)); got != int(n) {
			t.Fatalf("%q: %d, want %d", line, got, n)
		}
	})
}

func TestParseFileNr(t *testing.T) {
	for in, want := range map[string]int{"100445\t0\t2466160\n": 100445, "7": 7, "x\t0\t1\n": 0, "-5\t0\t1": 0, "": 0} {
		if got := parseFileNr([]byte(in)); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}
