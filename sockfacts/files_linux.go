package sockfacts

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf/asm"
	"github.com/tuple-net/tuple/inet"
	"github.com/tuple-net/tuple/internal/prefault"
)

// fileRecordLen is the size of one record of the task_file program: pid,
// fd (u32 each) and the inode number (u64).
const fileRecordLen = 16

// filesLayout is where the task_file program finds its fields.
type filesLayout struct {
	task, fd, file field // in struct bpf_iter__task_file, the program's context
	tgid           field // task_struct
	fInode         field // file
	iMode, iIno    field // inode
	// What boundFilesProgram reads of a socket file's sock (through
	// file->private_data, the struct socket, and socket->sk), or why it
	// cannot: SocketFiles does not need them.
	privateData, socketSk    field
	skFamily, skState, skNum field
	skProtocol               field
	sockErr                  error
}

var (
	filesOnce      sync.Once
	filesLay       *filesLayout
	filesLayoutErr error
)

func loadFilesLayout() (*filesLayout, error) {
	filesOnce.Do(func() {
		spec, err := kernelSpec()
		if err != nil {
			filesLayoutErr = err
			return
		}
		var l filesLayout
		if filesLayoutErr = loadFields(loaderBTF{spec}, l.fields()); filesLayoutErr != nil {
			return
		}
		if filesLayoutErr = l.check(); filesLayoutErr != nil {
			return
		}
		l.sockErr = loadFields(loaderBTF{spec}, l.sockFields())
		filesLay = &l
	})
	return filesLay, filesLayoutErr
}

// fields are the fields the program reads, with their sizes.
func (l *filesLayout) fields() []fieldSpec {
	return []fieldSpec{
		{&l.task, "bpf_iter__task_file", "task", 8},
		{&l.fd, "bpf_iter__task_file", "fd", 4},
		{&l.file, "bpf_iter__task_file", "file", 8},
		{&l.tgid, "task_struct", "tgid", 4},
		{&l.fInode, "file", "f_inode", 8},
		{&l.iMode, "inode", "i_mode", 2},
		{&l.iIno, "inode", "i_ino", 8},
	}
}

// sockFields are the fields boundFilesProgram reads beyond fields().
func (l *filesLayout) sockFields() []fieldSpec {
	return []fieldSpec{
		{&l.privateData, "file", "private_data", 8},
		{&l.socketSk, "socket", "sk", 8},
		{&l.skFamily, "sock_common", "skc_family", 2},
		{&l.skState, "sock_common", "skc_state", 1},
		{&l.skNum, "sock_common", "skc_num", 2},
		{&l.skProtocol, "sock", "sk_protocol", 2},
	}
}

// check: the context is an array of u64 arguments, and fd is read as the
// whole slot, whose low half it is.
func (l *filesLayout) check() error {
	if l.fd.off%8 != 0 {
		return fmt.Errorf("BPF socket iterator %w: bpf_iter__task_file.fd at offset %d", inet.ErrUnsupported, l.fd.off)
	}
	return nil
}

// The task_file programs' registers: the context, the task, the file and
// its inode; and the record's place on the stack.
const (
	fileCtx   = asm.R6
	fileTask  = asm.R7
	fileFile  = asm.R8
	fileInode = asm.R9
	fileBase  = -fileRecordLen
)

// filesProgram builds the iter/task_file program: for every descriptor
// whose inode is a socket (S_IFSOCK), one record (tgid, fd, i_ino). The
// kernel walks each file table once (threads sharing their leader's table
// are skipped).
func filesProgram(l *filesLayout) asm.Instructions {
	return append(socketFile(l), fileRecord(l)...)
}

// socketFile is the task_file programs' start: it loads the context, task,
// file and inode registers and exits past a descriptor that is no socket.
func socketFile(l *filesLayout) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(fileCtx, asm.R1),
		asm.LoadMem(fileTask, fileCtx, int16(l.task.off), asm.DWord), // ctx->task, NULL at the end
		asm.JEq.Imm(fileTask, 0, "exit"),
		asm.LoadMem(fileFile, fileCtx, int16(l.file.off), asm.DWord), // ctx->file
		asm.JEq.Imm(fileFile, 0, "exit"),
		asm.LoadMem(fileInode, fileFile, int16(l.fInode.off), asm.DWord), // file->f_inode
		asm.JEq.Imm(fileInode, 0, "exit"),
		asm.LoadMem(asm.R1, fileInode, int16(l.iMode.off), asm.Half),
		asm.And.Imm(asm.R1, 0o170000),         // S_IFMT
		asm.JNE.Imm(asm.R1, 0o140000, "exit"), // S_IFSOCK
	}
}

// fileRecord is the task_file programs' end: the record (tgid, fd, i_ino),
// written to the seq file.
func fileRecord(l *filesLayout) asm.Instructions {
	return append(asm.Instructions{
		asm.LoadMem(asm.R1, fileTask, int16(l.tgid.off), asm.Word),
		asm.StoreMem(asm.RFP, fileBase, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, fileCtx, int16(l.fd.off), asm.DWord),
		asm.StoreMem(asm.RFP, fileBase+4, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, fileInode, int16(l.iIno.off), asm.DWord),
		asm.StoreMem(asm.RFP, fileBase+8, asm.R1, asm.DWord),
	}, emitRecord(fileCtx, fileBase, fileRecordLen)...)
}

// boundFilesProgram is filesProgram keeping only the descriptors of
// bound-only TCP sockets, by the test inet_diag's own listing applies from
// Linux 6.8 on (TCP, state CLOSE, a local port still held: inet_num, which
// the kernel clears when it gives the port back). The socket is reached
// through file->private_data and socket->sk with probe reads, four more per
// socket file: kept out of filesProgram, which lists every one.
func boundFilesProgram(l *filesLayout) asm.Instructions {
	const (
		scratch = fileBase - 8 // a field read by bpf_probe_read_kernel
		sockOff = scratch - 8  // the struct sock's address
	)
	// read copies size bytes of the sock at off into the scratch slot.
	read := func(size int32, off uint32) asm.Instructions {
		return probeRead(scratch, size, asm.LoadMem(asm.R3, asm.RFP, sockOff, asm.DWord), off)
	}
	// struct socket *sock = file->private_data; sock->sk (a failed read,
	// of a NULL socket too, ends here).
	insns := socketFile(l)
	insns = append(insns, probeRead(sockOff, 8, asm.LoadMem(asm.R3, fileFile, int16(l.privateData.off), asm.DWord), l.socketSk.off)...)
	insns = append(insns,
		asm.JNE.Imm(asm.R0, 0, "exit"),
		asm.LoadMem(asm.R1, asm.RFP, sockOff, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "exit"),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, scratch, asm.R1, asm.DWord),
	)
	insns = append(insns, read(2, l.skProtocol.off)...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Half),
		asm.JNE.Imm(asm.R1, 6, "exit"), // IPPROTO_TCP
	)
	insns = append(insns, read(1, l.skState.off)...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Byte),
		asm.JNE.Imm(asm.R1, 7, "exit"), // TCP_CLOSE
	)
	insns = append(insns, read(2, l.skFamily.off)...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Half),
		asm.JEq.Imm(asm.R1, 2, "inet"),  // AF_INET
		asm.JNE.Imm(asm.R1, 10, "exit"), // AF_INET6
	)
	num := read(2, l.skNum.off)
	num[0] = num[0].WithSymbol("inet")
	insns = append(insns, num...)
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.RFP, scratch, asm.Half),
		asm.JEq.Imm(asm.R1, 0, "exit"), // no port held
	)
	return append(insns, fileRecord(l)...)
}

// initPidNS is the inode of the initial pid namespace (PROC_PID_INIT_INO).
const initPidNS = "pid:[4026531836]"

// SocketFiles lists every process's socket descriptors in one pass of a BPF
// iterator (iter/task_file), without reading each /proc/PID/fd link. It
// needs root (CAP_BPF and CAP_PERFMON), kernel BTF, and the initial pid
// namespace (the iterator reports pids as that namespace numbers them);
// otherwise the error wraps inet.ErrUnsupported. The program is loaded
// with bpf(2) from a scan of the raw BTF, or by cilium/ebpf's loader when
// that fails (attachIter).
func SocketFiles() ([]File, error) {
	n := lastFiles.Load()
	if n == 0 {
		b, _ := os.ReadFile("/proc/sys/fs/file-nr")
		n = int64(min(parseFileNr(b), 1<<22))
	}
	files, err := listFiles("tuple_task_file", filesProgram, nil, prefault.Make[File](0, max(int(n+n/8), 1<<12)))
	if err == nil {
		lastFiles.Store(int64(len(files)))
	}
	return files, err
}

// listFiles loads prog over the task_file iterator and reads its records
// into dst; ready, when set, says why the layout cannot serve prog.
func listFiles(name string, prog func(*filesLayout) asm.Instructions, ready func(*filesLayout) error, dst []File) ([]File, error) {
	if ns, err := os.Readlink("/proc/self/ns/pid"); err != nil || ns != initPidNS {
		return nil, fmt.Errorf("BPF socket iterator %w: not in the initial pid namespace (%s)", inet.ErrUnsupported, ns)
	}
	layout := func(l *filesLayout, err error) (*filesLayout, error) {
		if err == nil && ready != nil {
			if err = ready(l); err != nil {
				err = fmt.Errorf("BPF socket iterator %w: %v", inet.ErrUnsupported, err)
			}
		}
		return l, err
	}
	it, _, err := attachIter(name, "task_file",
		func(k *rawBTF) (*filesLayout, error) { return layout(k.files, k.filesErr) },
		func() (*filesLayout, error) { return layout(loadFilesLayout()) }, prog)
	if err != nil && os.Geteuid() != 0 {
		// Without root the cause is the privilege, whatever the loader's
		// error suggests (it blames the memlock limit).
		return nil, fmt.Errorf("BPF iterator %w: the BPF task_file iterator needs root (CAP_BPF and CAP_PERFMON)", inet.ErrUnsupported)
	}
	if err != nil {
		return nil, err
	}
	defer it.Close()
	return readFiles(it, dst)
}

// BoundFiles lists the descriptors of bound-only TCP sockets (bound to a
// port they still hold, neither listening nor connected) of every
// process, for kernels whose inet_diag cannot list those sockets (before
// 6.8). Its needs and errors are SocketFiles'.
func BoundFiles() ([]File, error) {
	return listFiles("tuple_bound_files", boundFilesProgram, func(l *filesLayout) error { return l.sockErr }, nil)
}

// filesBuf holds the read buffers of readFiles, kept from one call to the
// next (an exporter with owners lists the files on every scrape).
var filesBuf = sync.Pool{New: func() any { b := make([]byte, 0, scanBuffers*scanChunk); return &b }}

// lastFiles is how many descriptors the last SocketFiles listed: the next
// one's guess of its array's size (a process that lists them on every
// scrape then decodes them without growing it). The first guess is the
// host's count of open files (/proc/sys/fs/file-nr): on a host with many
// sockets, most of them.
var lastFiles atomic.Int64

// readFiles runs the task_file iterator once and appends its records to
// dst, decoded a chunk at a time as read: the stream is never held whole
// (on a host with 200,000 socket descriptors, 3 MiB that would be copied
// as it grew, then copied again decoded).
func readFiles(it iterLink, dst []File) ([]File, error) {
	rd, err := it.Open()
	if err != nil {
		return nil, fmt.Errorf("open BPF iterator: %w", err)
	}
	defer rd.Close()
	buf := filesBuf.Get().(*[]byte)
	defer filesBuf.Put(buf)
	err = scanChunks(rd.Read, *buf, fileRecordLen, func(b []byte) {
		dst = append(dst, File{
			PID:   int32(binary.NativeEndian.Uint32(b[0:])),
			FD:    int32(binary.NativeEndian.Uint32(b[4:])),
			Inode: binary.NativeEndian.Uint64(b[8:]),
		})
	})
	if err != nil {
		return nil, err
	}
	return dst, nil
}

// parseFileNr is the first field of /proc/sys/fs/file-nr ("allocated free
// max"): the file handles allocated. 0 when there is none.
func parseFileNr(b []byte) int {
	f, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\t"))
	n, err := strconv.Atoi(string(bytes.TrimSpace(f)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}
