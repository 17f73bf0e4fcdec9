package sockfacts

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// The kernel's BTF is megabytes that every process loading a program would
// scan (about 5 ms, a tenth of a `tuple ports` of 10,000 sockets), for a
// few dozen answers: the offsets of the fields the programs read and the
// ids of the iterators' functions. The answers of one scan are kept in a
// small file per kernel build, named by the kernel's GNU build ID (which
// covers its BTF, part of the same image) and the BTF's size, and read
// instead by the next process on that kernel. A question the file does not
// answer (a newer tuple asking more) scans the BTF again and rewrites it.

// btfSource answers what the programs ask of the kernel's BTF.
type btfSource interface {
	fieldFinder
	find(kind uint32, name string) (uint32, error)
}

// btfAnswers are the answers of one scan, by question.
type btfAnswers struct {
	Fields map[string]btfFieldAnswer `json:"fields"` // fieldKey
	Finds  map[string]btfFindAnswer  `json:"finds"`  // findKey
}

type btfFieldAnswer struct {
	Off, Size, Bit, NBits uint32
	Bitfield, Absent      bool
	Err                   string `json:",omitempty"`
}

type btfFindAnswer struct {
	ID  uint32
	Err string `json:",omitempty"`
}

func fieldKey(structName, name string, size uint32) string {
	return structName + "." + name + "/" + strconv.FormatUint(uint64(size), 10)
}

func findKey(kind uint32, name string) string {
	return strconv.FormatUint(uint64(kind), 10) + ":" + name
}

// errText and textErr carry an answer's error through the file: the
// callers only tell failure from success and show the text.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func textErr(s string) error {
	if s == "" {
		return nil
	}
	return errors.New(s)
}

// recordingBTF asks the scanned BTF and writes every answer down.
type recordingBTF struct {
	x *btfIndex
	a btfAnswers
}

func newRecordingBTF(x *btfIndex) *recordingBTF {
	return &recordingBTF{x: x, a: btfAnswers{Fields: map[string]btfFieldAnswer{}, Finds: map[string]btfFindAnswer{}}}
}

func (r *recordingBTF) field(structName, name string, size uint32) (field, error) {
	f, err := r.x.field(structName, name, size)
	r.a.Fields[fieldKey(structName, name, size)] = btfFieldAnswer{f.off, f.size, f.bit, f.nbits, f.isBitfield, f.absent, errText(err)}
	return f, err
}

func (r *recordingBTF) find(kind uint32, name string) (uint32, error) {
	id, err := r.x.find(kind, name)
	r.a.Finds[findKey(kind, name)] = btfFindAnswer{id, errText(err)}
	return id, err
}

// replayedBTF answers from a file; missed is set by a question it has no
// answer to (which fails, so the caller must check missed before trusting
// anything it built).
type replayedBTF struct {
	a      btfAnswers
	missed bool
}

var errNotAnswered = errors.New("not in the BTF answers file")

func (r *replayedBTF) field(structName, name string, size uint32) (field, error) {
	a, ok := r.a.Fields[fieldKey(structName, name, size)]
	if !ok {
		r.missed = true
		return field{}, errNotAnswered
	}
	return field{off: a.Off, size: a.Size, bit: a.Bit, nbits: a.NBits, isBitfield: a.Bitfield, absent: a.Absent}, textErr(a.Err)
}

func (r *replayedBTF) find(kind uint32, name string) (uint32, error) {
	a, ok := r.a.Finds[findKey(kind, name)]
	if !ok {
		r.missed = true
		return 0, errNotAnswered
	}
	return a.ID, textErr(a.Err)
}

// btfAnswersPath is the answers file of the running kernel in
// btfAnswersDir, "" when the kernel's build ID or the directory is unknown.
func btfAnswersPath() string {
	notes, err := os.ReadFile("/sys/kernel/notes")
	if err != nil {
		return ""
	}
	id, ok := parseBuildID(notes)
	if !ok {
		return ""
	}
	st, err := os.Stat(btfPath)
	if err != nil {
		return ""
	}
	dir := btfAnswersDir()
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, fmt.Sprintf("btf-%s-%d.json", hex.EncodeToString(id), st.Size()))
}

// btfAnswersDir is /var/cache/tuple for root, else tuple in the user's
// cache directory ($XDG_CACHE_HOME, else ~/.cache): root's files stay out
// of a user's home, which sudo may leave in HOME (a ~/.cache made by root
// would be in that user's way).
func btfAnswersDir() string {
	if os.Geteuid() == 0 {
		return "/var/cache/tuple"
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "tuple")
}

// maxAnswersFile bounds what is read: the file holds a few kilobytes.
const maxAnswersFile = 1 << 20

// readBTFAnswers reads the answers file at path, only if this user owns
// it and nobody else may write it: the answers become offsets the
// programs read kernel memory at.
func readBTFAnswers(path string) (btfAnswers, bool) {
	var a btfAnswers
	if path == "" {
		return a, false
	}
	f, err := os.Open(path)
	if err != nil {
		return a, false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o022 != 0 || st.Size() > maxAnswersFile {
		return a, false
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || int(sys.Uid) != os.Geteuid() {
		return a, false
	}
	if err := json.NewDecoder(f).Decode(&a); err != nil || a.Fields == nil || a.Finds == nil {
		return btfAnswers{}, false
	}
	return a, true
}

// writeBTFAnswers writes a to path whole (a temporary file renamed over
// it), best effort: a cache that cannot be written is only not kept.
func writeBTFAnswers(path string, a btfAnswers) {
	if path == "" {
		return
	}
	b, err := json.Marshal(a)
	if err != nil {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".btf-*")
	if err != nil {
		return
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil && cerr == nil && os.Rename(tmp.Name(), path) == nil {
		return
	}
	_ = os.Remove(tmp.Name())
}
