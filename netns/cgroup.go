package netns

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/tuple-net/tuple/internal/lazyre"
)

// Container is what a process's cgroup path says about it.
type Container struct {
	// ID is the container id (64 hex digits), "" when the path names none.
	ID string `json:"container_id,omitempty"`
	// Runtime is "docker", "containerd" or "cri-o" when the path says it.
	Runtime string `json:"runtime,omitempty"`
	// PodUID is the Kubernetes pod UID when the path is under kubepods.
	PodUID string `json:"pod_uid,omitempty"`
}

var (
	// A container id as runtimes write it into cgroup paths, with the
	// runtime's prefix under the systemd driver: docker-ID.scope,
	// cri-containerd-ID.scope, crio-ID.scope; a bare ID under cgroupfs.
	containerRe = lazyre.New(`(?:^|/)(docker-|cri-containerd-|crio-|crio-conmon-)?([0-9a-f]{64})(?:\.scope)?$`)
	// The pod's slice (systemd: kubepods-burstable-pod<uid with _>.slice)
	// or directory (cgroupfs: pod<uid>).
	podRe = lazyre.New(`(?:^|/|-)pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?(?:/|$)`)
)

// ParseCgroup reads /proc/PID/cgroup content and returns what its path
// says: the unified (cgroup v2, "0::") line when there is one, otherwise the
// first v1 line that names a container. A path that names nothing gives the
// zero Container.
func ParseCgroup(content []byte) Container {
	var best Container
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		c := parsePath(parts[2])
		if parts[0] == "0" && parts[1] == "" {
			return c
		}
		if best == (Container{}) {
			best = c
		}
	}
	return best
}

func parsePath(path string) Container {
	var c Container
	if m := podRe().FindStringSubmatch(path); m != nil && strings.Contains(path, "kubepods") {
		c.PodUID = strings.ReplaceAll(m[1], "_", "-")
	}
	if m := containerRe().FindStringSubmatch(path); m != nil {
		c.ID = m[2]
		switch m[1] {
		case "docker-":
			c.Runtime = "docker"
		case "cri-containerd-":
			c.Runtime = "containerd"
		case "crio-", "crio-conmon-":
			c.Runtime = "cri-o"
		default:
			// cgroupfs driver: /docker/ID for docker; under kubepods the
			// runtime is not in the path.
			if strings.Contains(path, "/docker/") {
				c.Runtime = "docker"
			}
		}
	}
	return c
}
