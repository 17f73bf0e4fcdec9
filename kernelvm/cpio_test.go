package kernelvm

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"testing"
)

// cpioEntry is one entry read back from a newc archive.
type cpioEntry struct {
	name       string
	mode       uint32
	data       []byte
	rdevMajor  uint32
	rdevMinor  uint32
	headerSeen int
}

// readNewc parses a newc archive the way the kernel's unpacker does
// (init/initramfs.c): fixed hex header, name, data, 4-byte alignment.
func readNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	align := func() { off = (off + 3) &^ 3 }
	hex := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	for {
		if off+110 > len(b) {
			t.Fatalf("truncated archive at %d", off)
		}
		if string(b[off:off+6]) != "070701" {
			t.Fatalf("bad magic %q at %d", b[off:off+6], off)
		}
		mode, size, maj, min, nameSize := hex(1), hex(6), hex(9), hex(10), hex(11)
		start := off
		off += 110
		name := string(b[off : off+int(nameSize)-1])
		if b[off+int(nameSize)-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off += int(nameSize)
		align()
		data := b[off : off+int(size)]
		off += int(size)
		align()
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, cpioEntry{name: name, mode: mode, data: data, rdevMajor: maj, rdevMinor: min, headerSeen: start})
	}
}

func TestCPIOWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.File("/bin/tool", 0o755, []byte("#!/bin/sh\n")))
	must(w.File("a/b/c.txt", 0o644, []byte("x"))) // odd sizes exercise the padding
	must(w.Symlink("lib64", "lib"))
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.Dir("empty", 0o700))
	must(w.Close())
	if err := w.File("late", 0o644, nil); err == nil {
		t.Error("a write after Close was accepted")
	}
	got := map[string]cpioEntry{}
	var order []string
	for _, e := range readNewc(t, buf.Bytes()) {
		if _, dup := got[e.name]; dup {
			t.Errorf("%s twice", e.name)
		}
		got[e.name] = e
		order = append(order, e.name)
	}
	want := []struct {
		name string
		mode uint32
		data string
	}{
		{"bin", modeDir | 0o755, ""},
		{"bin/tool", modeRegular | 0o755, "#!/bin/sh\n"},
		{"a", modeDir | 0o755, ""},
		{"a/b", modeDir | 0o755, ""},
		{"a/b/c.txt", modeRegular | 0o644, "x"},
		{"lib64", modeSymlink | 0o777, "lib"},
		{"dev", modeDir | 0o755, ""},
		{"dev/console", modeChar | 0o600, ""},
		{"empty", modeDir | 0o700, ""},
	}
	if len(order) != len(want) {
		t.Fatalf("entries %v, want %d", order, len(want))
	}
	for i, w := range want {
		e := got[w.name]
		if order[i] != w.name || e.mode != w.mode || string(e.data) != w.data {
			t.Errorf("entry %d: %q mode %o data %q; want %q mode %o data %q", i, order[i], e.mode, e.data, w.name, w.mode, w.data)
		}
	}
	if c := got["dev/console"]; c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console is %d:%d", c.rdevMajor, c.rdevMinor)
	}
	for _, e := range got {
		if e.headerSeen%4 != 0 {
			t.Errorf("%s: header at %d, not 4-aligned", e.name, e.headerSeen)
		}
	}
}

func TestCPIORefusesEscapingNames(t *testing.T) {
	w := newCPIOWriter(&bytes.Buffer{})
	for _, name := range []string{"", "/", "a\x00b"} {
		if err := w.File(name, 0o644, nil); err == nil {
			t.Errorf("name %q accepted", name)
		}
	}
	// ".." cannot climb above the root: it is cleaned to a name inside.
	if n, err := clean("../../etc/passwd"); err != nil || n != "etc/passwd" {
		t.Errorf("clean(../../etc/passwd) = %q, %v", n, err)
	}
}

// The initramfs carries the program as /init, its shared libraries, the
// modules in order and the run's description.
func TestInitramfsContents(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the guest is linux/amd64: this test binary is not an executable for it")
	}
	dir := t.TempDir()
	mods := dir + "/modules"
	mustWrite(t, mods+"/modules.order", "inet_diag.ko\ntcp_diag.ko\n")
	mustWrite(t, mods+"/inet_diag.ko", "first")
	mustWrite(t, mods+"/tcp_diag.ko", "second")
	exe := testExe(t)
	b, err := initramfsBytes(Config{Exe: exe, Modules: mods, Args: []string{"lab", "--json"}, Files: map[string][]byte{"lab/x.lab": []byte("[x]\n")}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpioEntry{}
	for _, e := range readNewc(t, b) {
		got[e.name] = e
	}
	for _, name := range []string{"init", "dev/console", guestModules + "/inet_diag.ko", guestModules + "/tcp_diag.ko", "lab/x.lab", guestSpec, "proc", "sys", "tmp"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s in the initramfs", name)
		}
	}
	deps, err := elfDeps(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps { // empty for a static test binary
		if _, ok := got[d[1:]]; !ok {
			t.Errorf("%s needs %s, not in the initramfs", exe, d)
		}
	}
	if s := string(got[guestSpec].data); s != `{"args":["lab","--json"],"env":null,"modules":["inet_diag.ko","tcp_diag.ko"]}` {
		t.Errorf("spec %s", s)
	}
	if _, err := initramfsBytes(Config{Exe: exe, Modules: t.TempDir()}); err == nil {
		t.Error("a modules directory without modules.order was accepted")
	}
	mustWrite(t, mods+"/modules.order", "../evil.ko\n")
	if _, err := initramfsBytes(Config{Exe: exe, Modules: mods}); err == nil {
		t.Error("a module path leaving the directory was accepted")
	}
}

func mustWrite(t *testing.T, name, text string) {
	t.Helper()
	if err := writeFile(name, text); err != nil {
		t.Fatal(err)
	}
}

func ExampleResolve() {
	_, err := Resolve("no-such-kernel")
	fmt.Println(err != nil)
	// Output: true
}
