package socktab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"

	"golang.org/x/sys/unix"
)

// ownerHit is one descriptor that refers to a wanted socket.
type ownerHit struct {
	index int // into the sockets slice
	pid   int
	fd    int
}

// findOwners reads the link of every descriptor of every process under
// procRoot and returns the descriptors whose socket inode is in want
// (inode -> index into the table). Processes are scanned in parallel; each
// process's descriptors are read once. Processes that exit during the scan
// are skipped; processes whose descriptors cannot be read are counted in the
// returned note.
func findOwners(procRoot string, want map[uint64]int) ([]ownerHit, []string) {
	if len(want) == 0 {
		return nil, nil
	}
	dir, err := os.Open(procRoot)
	if err != nil {
		return nil, []string{fmt.Sprintf("owners unknown: %v", err)}
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, []string{fmt.Sprintf("owners unknown: %v", err)}
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, ok := parseDecimal(n); ok {
			pids = append(pids, pid)
		}
	}

	workers := runtime.GOMAXPROCS(0) + 1
	if workers > len(pids) {
		workers = len(pids)
	}
	var (
		mu     sync.Mutex
		hits   []ownerHit
		denied int
		next   int
		wg     sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []ownerHit
			sc := fdScanner{linkBuf: make([]byte, 64), dentBuf: make([]byte, 32<<10)}
			localDenied := 0
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(pids) {
					break
				}
				var err error
				local, err = sc.scan(procRoot, pids[i], want, local)
				if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
					localDenied++
				}
			}
			mu.Lock()
			hits = append(hits, local...)
			denied += localDenied
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(hits, func(i, j int) bool {
		if hits[i].index != hits[j].index {
			return hits[i].index < hits[j].index
		}
		if hits[i].pid != hits[j].pid {
			return hits[i].pid < hits[j].pid
		}
		return hits[i].fd < hits[j].fd
	})
	var notes []string
	if denied > 0 {
		notes = append(notes, fmt.Sprintf("owners incomplete: descriptors of %d processes not readable (permission denied; run as root)", denied))
	}
	return hits, notes
}

// fdScanner holds one worker's buffers, reused for every process.
type fdScanner struct {
	linkBuf []byte
	dentBuf []byte
}

// scan appends the wanted descriptors of process pid to hits. It reads the
// fd directory with getdents64 and each entry with readlinkat relative to
// the directory, so a process costs one open plus one syscall per
// descriptor.
func (sc *fdScanner) scan(procRoot string, pid int, want map[uint64]int, hits []ownerHit) ([]ownerHit, error) {
	dfd, err := unix.Open(procRoot+"/"+itoa(pid)+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return hits, err // ENOENT: the process exited; EACCES: not ours
	}
	defer unix.Close(dfd)
	for {
		n, err := unix.Getdents(dfd, sc.dentBuf)
		if err != nil {
			return hits, err
		}
		if n <= 0 {
			return hits, nil
		}
		buf := sc.dentBuf[:n]
		for len(buf) > 0 {
			name, rest, ok := nextDirent(buf)
			if !ok {
				break
			}
			buf = rest
			fd, ok := parseDecimal(name)
			if !ok {
				continue // "." and ".."
			}
			m, err := unix.Readlinkat(dfd, name, sc.linkBuf)
			if err != nil || m <= 0 {
				continue // closed meanwhile
			}
			inode, ok := parseSocketLink(sc.linkBuf[:m])
			if !ok {
				continue
			}
			if idx, ok := want[inode]; ok {
				hits = append(hits, ownerHit{index: idx, pid: pid, fd: fd})
			}
		}
	}
}

// readComm returns the command name of pid, "" when it cannot be read.
func readComm(procRoot string, pid int) string {
	b, err := os.ReadFile(procRoot + "/" + itoa(pid) + "/comm")
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
		comm, ok := comms[h.pid]
		if !ok {
			comm = readComm(procRoot, h.pid)
			comms[h.pid] = comm
		}
		all[i] = Owner{PID: h.pid, Comm: comm, FD: h.fd}
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
