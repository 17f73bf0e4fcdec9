package netns

import "testing"

func TestParseCgroup(t *testing.T) {
	const id = "3f4e5b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a"
	for _, tc := range []struct {
		name, content string
		want          Container
	}{
		{"host process", "0::/user.slice/user-1000.slice/session-2.scope\n", Container{}},
		{"docker systemd driver", "0::/system.slice/docker-" + id + ".scope\n", Container{ID: id, Runtime: "docker"}},
		{"docker cgroupfs v1", "12:pids:/docker/" + id + "\n11:memory:/docker/" + id + "\n", Container{ID: id, Runtime: "docker"}},
		{"containerd kubepods systemd", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1c2d3e_4f5a_6b7c_8d9e_0f1a2b3c4d5e.slice/cri-containerd-" + id + ".scope\n",
			Container{ID: id, Runtime: "containerd", PodUID: "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"}},
		{"crio kubepods systemd", "0::/kubepods.slice/kubepods-pod0b1c2d3e_4f5a_6b7c_8d9e_0f1a2b3c4d5e.slice/crio-" + id + ".scope\n",
			Container{ID: id, Runtime: "cri-o", PodUID: "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"}},
		{"kubepods cgroupfs", "0::/kubepods/besteffort/pod0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e/" + id + "\n",
			Container{ID: id, PodUID: "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e"}},
		{"v2 line wins over v1", "1:name=systemd:/docker/" + id + "\n0::/init.scope\n", Container{}},
		{"not a pod outside kubepods", "0::/system.slice/pod0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e.slice\n", Container{}},
		{"garbage", "no colons here\n::\n", Container{}},
		{"short id is no id", "0::/docker/3f4e5b1c\n", Container{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseCgroup([]byte(tc.content)); got != tc.want {
				t.Errorf("ParseCgroup(%q) = %+v, want %+v", tc.content, got, tc.want)
			}
		})
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("0::/kubepods.slice/kubepods-pod0b1c2d3e_4f5a_6b7c_8d9e_0f1a2b3c4d5e.slice/crio-3f4e5b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a.scope\n"))
	f.Add([]byte("12:pids:/docker/abc\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := ParseCgroup(b)
		if c.ID != "" && len(c.ID) != 64 {
			t.Errorf("container id %q is not 64 hex digits", c.ID)
		}
		if c.PodUID != "" && len(c.PodUID) != 36 {
			t.Errorf("pod uid %q is not a UUID", c.PodUID)
		}
	})
}
