package sockfacts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf/asm"
	"github.com/tuple-net/tuple/internal/prefault"
	"golang.org/x/sys/unix"
)

// The iterators without cilium/ebpf's loader: the loader finds a
// program's attach point (the function bpf_iter_tcp, bpf_iter_task_file)
// by decoding the kernel's BTF with every type the function's arguments
// reach (tens of milliseconds and megabytes of fresh memory). Here one scan
// of the raw BTF per process finds the functions' ids and the programs'
// offsets (rawKernel), and bpf(2) calls load, attach and open the
// iterators. Any failure falls back to the loader.

// bpf(2) commands and constants (include/uapi/linux/bpf.h).
const (
	bpfProgLoad      = 5
	bpfLinkCreate    = 28
	bpfIterCreate    = 33
	bpfProgTracing   = 26 // BPF_PROG_TYPE_TRACING
	bpfTraceIter     = 28 // BPF_TRACE_ITER
	btfPath          = "/sys/kernel/btf/vmlinux"
	taskFileProgName = "tuple_task_file"
)

// progLoadAttr is union bpf_attr as BPF_PROG_LOAD reads it, up to
// attach_btf_obj_fd (the kernel zero-fills what a shorter attr omits).
type progLoadAttr struct {
	progType, insnCnt  uint32
	insns, license     uint64
	logLevel, logSize  uint32
	logBuf             uint64
	kernVersion, flags uint32
	name               [16]byte
	ifindex            uint32
	expectedAttachType uint32
	btfFD, funcInfoRec uint32
	funcInfo           uint64
	funcInfoCnt        uint32
	lineInfoRec        uint32
	lineInfo           uint64
	lineInfoCnt        uint32
	attachBTFID        uint32
	attachBTFObjFD     uint32
	_                  uint32
}

// linkCreateAttr is BPF_LINK_CREATE's part: an iterator link over every
// task (no iter_info).
type linkCreateAttr struct {
	progFD, targetFD, attachType, flags uint32
	iterInfo                            uint64
	iterInfoLen                         uint32
	_                                   uint32
}

func bpfCall(cmd uintptr, attr unsafe.Pointer, size uintptr) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(attr), size)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// BTF commands of bpf(2).
const (
	bpfObjGetInfoByFD = 15
	bpfBTFGetFDByID   = 19
	bpfBTFGetNextID   = 23
)

// btfInfo is struct bpf_btf_info.
type btfInfo struct {
	btf       uint64
	btfSize   uint32
	id        uint32
	name      uint64
	nameLen   uint32
	kernelBTF uint32
}

// kernelBTFBlob copies the kernel's BTF (the object named vmlinux) out of
// the kernel in one bpf(2) call: reading /sys/kernel/btf/vmlinux takes one
// read per 4 KiB page, about 1,300 calls.
func kernelBTFBlob() ([]byte, error) {
	var id uint32
	for range 64 { // vmlinux's BTF is the first object; modules follow
		next := [3]uint32{id}
		if _, err := bpfCall(bpfBTFGetNextID, unsafe.Pointer(&next), unsafe.Sizeof(next)); err != nil {
			return nil, fmt.Errorf("bpf btf get next id: %w", err)
		}
		id = next[1]
		get := [3]uint32{id}
		fd, err := bpfCall(bpfBTFGetFDByID, unsafe.Pointer(&get), unsafe.Sizeof(get))
		if err != nil {
			return nil, fmt.Errorf("bpf btf get fd by id %d: %w", id, err)
		}
		b, err := btfObject(fd)
		unix.Close(fd)
		if err != errNotVmlinux {
			return b, err
		}
	}
	return nil, errNotVmlinux
}

var errNotVmlinux = fmt.Errorf("not the kernel's BTF")

// btfObject returns the BTF object fd's data if it is vmlinux.
func btfObject(fd int) ([]byte, error) {
	var name [16]byte
	info := btfInfo{name: uint64(uintptr(unsafe.Pointer(&name[0]))), nameLen: uint32(len(name))}
	get := func() error {
		attr := struct {
			fd, infoLen uint32
			info        uint64
		}{uint32(fd), uint32(unsafe.Sizeof(info)), uint64(uintptr(unsafe.Pointer(&info)))}
		_, err := bpfCall(bpfObjGetInfoByFD, unsafe.Pointer(&attr), unsafe.Sizeof(attr))
		return err
	}
	if err := get(); err != nil {
		return nil, fmt.Errorf("bpf obj get info: %w", err)
	}
	if info.kernelBTF == 0 || string(name[:min(int(info.nameLen), len(name))]) != "vmlinux" {
		return nil, errNotVmlinux
	}
	buf := make([]byte, info.btfSize)
	prefault.Slice(buf)
	info = btfInfo{btf: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))), btfSize: uint32(len(buf))}
	err := get()
	runtime.KeepAlive(buf)
	if err != nil {
		return nil, fmt.Errorf("bpf obj get info: %w", err)
	}
	if int(info.btfSize) != len(buf) {
		return nil, fmt.Errorf("kernel BTF of %d bytes, then %d", len(buf), info.btfSize)
	}
	return buf, nil
}

// readKernelBTF reads the kernel's raw BTF into a buffer backed by huge
// pages where the kernel offers them (5 MB of fresh pages otherwise fault
// in one by one).
func readKernelBTF() ([]byte, error) {
	f, err := os.Open(btfPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	buf := make([]byte, st.Size()+1) // one more: a short read proves the end
	prefault.Slice(buf)
	n, err := io.ReadFull(f, buf)
	if err != io.ErrUnexpectedEOF {
		if err == nil {
			err = fmt.Errorf("%s: larger than its size %d", btfPath, st.Size())
		}
		return nil, err
	}
	return buf[:n], nil
}

// rawFilesLayout finds the task_file program's fields.
func rawFilesLayout(x fieldFinder) (*filesLayout, error) {
	var l filesLayout
	if err := loadFields(x, l.fields()); err != nil {
		return nil, err
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	l.sockErr = loadFields(x, l.sockFields())
	return &l, nil
}

// rawBTF is what the programs loaded with bpf(2) need of the kernel's BTF:
// each program's layout (or why it cannot be had) and the ids of the
// iterator targets' functions, which the programs attach to.
type rawBTF struct {
	sock     *layout
	sockErr  error
	files    *filesLayout
	filesErr error
	groups   *groupLayout
	grpErr   error
	targets  map[string]uint32 // "tcp": the id of func bpf_iter_tcp
}

// rawKernel scans the kernel's BTF once per process, for every program
// loaded with bpf(2), or reads the answers of an earlier scan on this
// kernel (btfAnswersPath); the BTF itself is not kept.
var rawKernel = sync.OnceValues(func() (*rawBTF, error) {
	path := btfAnswersPath()
	if a, ok := readBTFAnswers(path); ok {
		r := &replayedBTF{a: a}
		if k := scanKernel(r); !r.missed {
			return k, nil
		}
	}
	raw, release, err := kernelBTFRaw()
	if err != nil {
		return nil, err
	}
	defer release()
	x, err := parseBTF(raw)
	if err != nil {
		return nil, err
	}
	var sl layout
	var fl filesLayout
	var gl groupLayout
	structs := []string{"socket_alloc"}
	for _, f := range slices.Concat(sl.fields(), fl.fields(), fl.sockFields(), gl.fields()) {
		structs = append(structs, f.st)
	}
	x.prefetch(btfStruct, structs...)
	x.prefetch(btfFunc, iterFuncs...)
	rec := newRecordingBTF(x)
	k := scanKernel(rec)
	writeBTFAnswers(path, rec.a)
	return k, nil
})

// iterFuncs are the functions the iterator targets attach to.
var iterFuncs = []string{"bpf_iter_tcp", "bpf_iter_udp", "bpf_iter_task_file"}

// scanKernel asks src what every program loaded with bpf(2) needs.
func scanKernel(src btfSource) *rawBTF {
	k := &rawBTF{targets: map[string]uint32{}}
	k.sock, k.sockErr = loadLayout(src)
	k.files, k.filesErr = rawFilesLayout(src)
	if k.sockErr == nil {
		k.groups, k.grpErr = loadGroupLayout(k.sock, src)
	} else {
		k.grpErr = k.sockErr
	}
	for _, fn := range iterFuncs {
		if id, err := src.find(btfFunc, fn); err == nil {
			k.targets[strings.TrimPrefix(fn, "bpf_iter_")] = id
		}
	}
	return k
}

// kernelBTFRaw is the kernel's raw BTF mapped read-only where the kernel
// lets /sys/kernel/btf/vmlinux be mapped (Linux 6.16 on): no copy of its
// megabytes. Elsewhere it is copied out (kernelBTFBlob, readKernelBTF).
// release unmaps it; nothing may use raw after.
func kernelBTFRaw() (raw []byte, release func(), err error) {
	if b, err := mapKernelBTF(); err == nil {
		return b, func() { unix.Munmap(b) }, nil
	}
	if raw, err = kernelBTFBlob(); err != nil {
		if raw, err = readKernelBTF(); err != nil {
			return nil, nil, err
		}
	}
	return raw, func() {}, nil
}

// mapKernelBTF maps /sys/kernel/btf/vmlinux read-only.
func mapKernelBTF() ([]byte, error) {
	f, err := os.Open(btfPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_PRIVATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap "+btfPath, err)
	}
	return b, nil
}

// rawLink is an iterator program loaded and attached with bpf(2): the
// link's descriptor, which holds the program.
type rawLink int

// rawIterLink loads insns as an iterator program attached to the target
// function of BTF id attachID, and links it.
func rawIterLink(name string, insns asm.Instructions, attachID uint32) (rawLink, error) {
	if attachID == 0 {
		return -1, fmt.Errorf("kernel BTF has no iterator target for %s", name)
	}
	var code bytes.Buffer
	if err := insns.Marshal(&code, hostByteOrder()); err != nil {
		return -1, err
	}
	b := code.Bytes()
	license := []byte("GPL\x00")
	a := progLoadAttr{progType: bpfProgTracing, insnCnt: uint32(len(b) / 8),
		insns:              uint64(uintptr(unsafe.Pointer(&b[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		expectedAttachType: bpfTraceIter, attachBTFID: attachID}
	copy(a.name[:len(a.name)-1], name)
	prog, err := bpfCall(bpfProgLoad, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(b)
	runtime.KeepAlive(license)
	if err != nil {
		return -1, fmt.Errorf("bpf prog load: %w", err)
	}
	defer unix.Close(prog) // the link holds the program
	la := linkCreateAttr{progFD: uint32(prog), attachType: bpfTraceIter}
	lnk, err := bpfCall(bpfLinkCreate, unsafe.Pointer(&la), unsafe.Sizeof(la))
	if err != nil {
		return -1, fmt.Errorf("bpf link create: %w", err)
	}
	return rawLink(lnk), nil
}

// Open creates an iterator of the link (BPF_ITER_CREATE): a file whose
// reads run the program, over the calling thread's network namespace.
func (l rawLink) Open() (io.ReadCloser, error) {
	ia := [2]uint32{uint32(l), 0} // link_fd, flags
	it, err := bpfCall(bpfIterCreate, unsafe.Pointer(&ia), unsafe.Sizeof(ia))
	if err != nil {
		return nil, fmt.Errorf("bpf iter create: %w", err)
	}
	return os.NewFile(uintptr(it), "bpf_iter"), nil
}

// Close releases the link and so the program.
func (l rawLink) Close() error { return unix.Close(int(l)) }

// hostByteOrder is binary.NativeEndian as the instruction encoder takes
// it (little or big endian by name).
func hostByteOrder() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}
