package sockfacts

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// scanned is what a scan gave every program, as text: errors by their
// text (an answers file keeps no error values), the group layout without
// its pointer to the socket layout.
func scanned(k *rawBTF) string {
	s := fmt.Sprintf("sock %+v (%s)\nfiles %s (%s)\ntargets %v\n", deref(k.sock), errText(k.sockErr), filesText(k.files), errText(k.filesErr), k.targets)
	if g := k.groups; g != nil {
		c := *g
		c.layout = nil
		s += fmt.Sprintf("groups %+v", c)
	}
	return s + " (" + errText(k.grpErr) + ")"
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

func filesText(l *filesLayout) string {
	if l == nil {
		return "none"
	}
	c := *l
	c.sockErr = nil
	return fmt.Sprintf("%+v sock fields: %s", c, errText(l.sockErr))
}

// TestBTFAnswersReplayTheScan: the answers a scan of the kernel's BTF
// wrote down give every program, through the file and back, the layouts
// and ids the scan gave; an answer the file lacks is a miss, which sends
// rawKernel back to the BTF.
func TestBTFAnswersReplayTheScan(t *testing.T) {
	requireBTF(t)
	raw, release, err := kernelBTFRaw()
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	x, err := parseBTF(raw)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecordingBTF(x)
	want := scanned(scanKernel(rec))
	path := filepath.Join(t.TempDir(), "tuple", "btf.json")
	writeBTFAnswers(path, rec.a)
	a, ok := readBTFAnswers(path)
	if !ok {
		t.Fatalf("the answers just written to %s are not read back", path)
	}
	r := &replayedBTF{a: a}
	if got := scanned(scanKernel(r)); r.missed || got != want {
		t.Fatalf("replayed (missed %v):\n%s\nscanned:\n%s", r.missed, got, want)
	}
	delete(a.Fields, fieldKey("sock_common", "skc_family", 2))
	r = &replayedBTF{a: a}
	if scanKernel(r); !r.missed {
		t.Error("an answers file without skc_family's answer was not a miss")
	}
}

// TestBTFAnswersFileTrusted: the answers file is read only when it is this
// user's, a regular file nobody else may write, and whole.
func TestBTFAnswersFileTrusted(t *testing.T) {
	dir := t.TempDir()
	a := btfAnswers{Fields: map[string]btfFieldAnswer{"s.f/4": {Off: 8, Size: 4}}, Finds: map[string]btfFindAnswer{"12:f": {ID: 7}}}
	path := filepath.Join(dir, "btf.json")
	writeBTFAnswers(path, a)
	if got, ok := readBTFAnswers(path); !ok || got.Fields["s.f/4"].Off != 8 || got.Finds["12:f"].ID != 7 {
		t.Fatalf("readBTFAnswers = %+v, %v", got, ok)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, ok := readBTFAnswers(path); ok {
		t.Error("a world-writable answers file was read")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		if _, ok := readBTFAnswers(path); ok {
			t.Error("another user's answers file was read")
		}
	}
	for name, body := range map[string]string{"cut": `{"fields":{"s.f/4":{"Off":8`, "no finds": `{"fields":{}}`, "not json": "BTF"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, ok := readBTFAnswers(p); ok {
			t.Errorf("answers file %q was read", name)
		}
	}
	if _, ok := readBTFAnswers(dir); ok {
		t.Error("a directory was read as the answers file")
	}
	if _, ok := readBTFAnswers(""); ok {
		t.Error("no path, yet answers")
	}
}

// TestBTFAnswersDirForRoot: root's answers stay out of HOME, which sudo may
// leave pointing at a user's home.
func TestBTFAnswersDirForRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("root's answers directory: needs root")
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", "")
	if d := btfAnswersDir(); d != "/var/cache/tuple" {
		t.Errorf("root's answers go to %s, want /var/cache/tuple", d)
	}
}
