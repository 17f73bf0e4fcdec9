package sockfacts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	"github.com/tuple-net/tuple/internal/prefault"
	"golang.org/x/sys/unix"
)

// The task_file iterator without cilium/ebpf's loader: the loader finds
// the attach point (the function bpf_iter_task_file) by decoding the
// kernel's BTF with every type the function's arguments reach (tens of
// milliseconds and megabytes of fresh memory). Here one scan of
// the raw BTF finds the function's id and the program's seven offsets, and
// three bpf(2) calls load, attach and open the iterator. Any failure falls
// back to the loader.

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

// rawFilesLayout finds the task_file program's fields and attach id.
func rawFilesLayout(x *btfIndex) (*filesLayout, uint32, error) {
	var l filesLayout
	if err := loadFields(x, l.fields()); err != nil {
		return nil, 0, err
	}
	if err := l.check(); err != nil {
		return nil, 0, err
	}
	id, err := x.find(btfFunc, "bpf_iter_task_file")
	return &l, id, err
}

// rawTaskFiles runs the task_file program loaded with bpf(2) directly and
// returns its records.
func rawTaskFiles() ([]byte, error) {
	raw, err := kernelBTFBlob()
	if err != nil {
		if raw, err = readKernelBTF(); err != nil {
			return nil, err
		}
	}
	x, err := parseBTF(raw)
	if err != nil {
		return nil, err
	}
	l, attachID, err := rawFilesLayout(x)
	if err != nil {
		return nil, err
	}
	var code bytes.Buffer
	if err := filesProgram(l).Marshal(&code, hostByteOrder()); err != nil {
		return nil, err
	}
	insns := code.Bytes()
	license := []byte("GPL\x00")
	a := progLoadAttr{progType: bpfProgTracing, insnCnt: uint32(len(insns) / 8),
		insns:              uint64(uintptr(unsafe.Pointer(&insns[0]))),
		license:            uint64(uintptr(unsafe.Pointer(&license[0]))),
		expectedAttachType: bpfTraceIter, attachBTFID: attachID}
	copy(a.name[:], taskFileProgName)
	prog, err := bpfCall(bpfProgLoad, unsafe.Pointer(&a), unsafe.Sizeof(a))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if err != nil {
		return nil, fmt.Errorf("bpf prog load: %w", err)
	}
	defer unix.Close(prog)
	la := linkCreateAttr{progFD: uint32(prog), attachType: bpfTraceIter}
	lnk, err := bpfCall(bpfLinkCreate, unsafe.Pointer(&la), unsafe.Sizeof(la))
	if err != nil {
		return nil, fmt.Errorf("bpf link create: %w", err)
	}
	defer unix.Close(lnk)
	ia := [2]uint32{uint32(lnk), 0} // link_fd, flags
	it, err := bpfCall(bpfIterCreate, unsafe.Pointer(&ia), unsafe.Sizeof(ia))
	if err != nil {
		return nil, fmt.Errorf("bpf iter create: %w", err)
	}
	defer unix.Close(it)
	buf := make([]byte, 0, 256<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(it, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read BPF iterator: %w", err)
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// hostByteOrder is binary.NativeEndian as the instruction encoder takes
// it (little or big endian by name).
func hostByteOrder() binary.ByteOrder {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}
