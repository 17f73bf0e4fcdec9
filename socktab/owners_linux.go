package socktab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// ownerHit is one descriptor that refers to a wanted socket.
type ownerHit struct {
	index int32 // into the sockets slice
	pid   int32
	fd    int32
}

// findOwners reads the link of every descriptor of every process under
// procRoot and returns the descriptors whose socket inode is in want
// (inode -> index into the table). Processes are scanned in parallel; each
// process's descriptors are read once. Processes that exit during the scan
// are skipped; processes whose descriptors cannot be read are counted
// (denied) and named in the returned notes.
func findOwners(procRoot string, want map[uint64]int) (hits []ownerHit, denied int, notes []string) {
	if len(want) == 0 {
		return nil, 0, nil
	}
	dir, err := os.Open(procRoot)
	if err != nil {
		return nil, 0, []string{fmt.Sprintf("owners unknown: %v", err)}
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, 0, []string{fmt.Sprintf("owners unknown: %v", err)}
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, ok := parseDecimal(n); ok {
			pids = append(pids, pid)
		}
	}

	workers := runtime.GOMAXPROCS(0) + 1
	hits, big, denied := scanProcesses(procRoot, pids, want, workers)
	hits = scanBigDirs(big, want, workers, hits)
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].index != hits[j].index {
			return hits[i].index < hits[j].index
		}
		if hits[i].pid != hits[j].pid {
			return hits[i].pid < hits[j].pid
		}
		return hits[i].fd < hits[j].fd
	})
	if denied > 0 {
		notes = append(notes, fmt.Sprintf("owners incomplete: descriptors of %d processes not readable (permission denied; run as root)", denied))
	}
	return hits, denied, notes
}

// scanProcesses is findOwners' first phase: it reads the descriptors of
// every process of pids, in parallel, and returns the hits, the processes
// whose descriptors it could not read, and the fd directories too large to
// read in one go (listed and left open for scanBigDirs).
func scanProcesses(procRoot string, pids []int, want map[uint64]int, workers int) (hits []ownerHit, big []bigDir, denied int) {
	var mu sync.Mutex
	// Every process, in parallel. Small fd tables are read at
	// once; large ones (a server with thousands of connections) are listed
	// and left open for scanBigDirs, so one process does not keep one worker
	// busy while the others idle.
	parallel(workers, len(pids), func(next func() (int, bool)) {
		sc := newFDScanner()
		var local []ownerHit
		var localBig []bigDir
		localDenied := 0
		for i, ok := next(); ok; i, ok = next() {
			d, err := sc.list(procRoot, pids[i])
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				localDenied++
			}
			if err != nil {
				continue
			}
			if len(d.names) > splitAbove {
				localBig = append(localBig, d)
				continue
			}
			local = sc.readlinks(d, d.names, want, local)
			unix.Close(d.fd)
		}
		mu.Lock()
		hits = append(hits, local...)
		big = append(big, localBig...)
		denied += localDenied
		mu.Unlock()
	})
	return hits, big, denied
}

// scanBigDirs is findOwners' second phase: the large fd tables, split into
// chunks across the workers; it appends their hits to hits and closes the
// directories.
func scanBigDirs(big []bigDir, want map[uint64]int, workers int, hits []ownerHit) []ownerHit {
	var mu sync.Mutex
	type chunk struct {
		d     bigDir
		names []string
	}
	var chunks []chunk
	for _, d := range big {
		for i := 0; i < len(d.names); i += splitAbove {
			chunks = append(chunks, chunk{d, d.names[i:min(i+splitAbove, len(d.names))]})
		}
	}
	parallel(workers, len(chunks), func(next func() (int, bool)) {
		sc := newFDScanner()
		var local []ownerHit
		for i, ok := next(); ok; i, ok = next() {
			local = sc.readlinks(chunks[i].d, chunks[i].names, want, local)
		}
		mu.Lock()
		hits = append(hits, local...)
		mu.Unlock()
	})
	for _, d := range big {
		unix.Close(d.fd)
	}
	return hits
}

// splitAbove is the fd table size above which a process's descriptors are
// read in chunks by several workers.
const splitAbove = 1024

// parallel runs work on n items with up to workers goroutines; next hands
// out item indexes until none are left.
func parallel(workers, n int, work func(next func() (int, bool))) {
	var mu sync.Mutex
	i := 0
	next := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		if i >= n {
			return 0, false
		}
		i++
		return i - 1, true
	}
	var wg sync.WaitGroup
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(next)
		}()
	}
	wg.Wait()
}

// bigDir is an open /proc/PID/fd directory and its entries.
type bigDir struct {
	pid   int
	fd    int
	names []string
}

// fdScanner holds one worker's buffers, reused for every process.
type fdScanner struct {
	linkBuf []byte
	dentBuf []byte
}

func newFDScanner() *fdScanner {
	return &fdScanner{linkBuf: make([]byte, 64), dentBuf: make([]byte, 32<<10)}
}

// list opens /proc/PID/fd and reads its entries with getdents64. The
// caller closes the returned directory descriptor.
func (sc *fdScanner) list(procRoot string, pid int) (bigDir, error) {
	dfd, err := unix.Open(procRoot+"/"+strconv.Itoa(pid)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return bigDir{}, err // ENOENT: the process exited; EACCES: not ours
	}
	d := bigDir{pid: pid, fd: dfd}
	for {
		n, err := unix.Getdents(dfd, sc.dentBuf)
		if err != nil {
			unix.Close(dfd)
			return bigDir{}, err
		}
		if n <= 0 {
			return d, nil
		}
		// ParseDirent leaves out "." and "..".
		_, _, d.names = unix.ParseDirent(sc.dentBuf[:n], -1, d.names)
	}
}

// readlinks reads the links of names in d (one readlinkat each, relative
// to the open directory) and appends the wanted sockets to hits.
func (sc *fdScanner) readlinks(d bigDir, names []string, want map[uint64]int, hits []ownerHit) []ownerHit {
	for _, name := range names {
		fd, ok := parseDecimal(name)
		if !ok {
			continue
		}
		m, err := unix.Readlinkat(d.fd, name, sc.linkBuf)
		if err != nil || m <= 0 {
			continue // closed meanwhile
		}
		inode, ok := parseSocketLink(sc.linkBuf[:m])
		if !ok {
			continue
		}
		if idx, ok := want[inode]; ok {
			hits = append(hits, ownerHit{index: int32(idx), pid: int32(d.pid), fd: int32(fd)})
		}
	}
	return hits
}

// readComm returns the command name of pid, "" when it cannot be read.
func readComm(procRoot string, pid int) string {
	b, err := os.ReadFile(procRoot + "/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return string(bytes.TrimRight(b, "\n"))
}

// attachOwners fills Socket.Owners from hits (sorted by index), sharing one
// backing array, and reads each owning process's comm once.
func attachOwners(procRoot string, socks []Socket, hits []ownerHit) {
	all := make([]Owner, len(hits))
	comms := make(map[int]string)
	for i, h := range hits {
		pid := int(h.pid)
		comm, ok := comms[pid]
		if !ok {
			comm = readComm(procRoot, pid)
			comms[pid] = comm
		}
		all[i] = Owner{PID: pid, Comm: comm, FD: int(h.fd)}
	}
	for start := 0; start < len(hits); {
		end := start + 1
		for end < len(hits) && hits[end].index == hits[start].index {
			end++
		}
		socks[hits[start].index].Owners = all[start:end:end]
		start = end
	}
}
