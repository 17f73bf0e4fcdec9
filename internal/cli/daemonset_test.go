package cli

import (
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

const daemonSetFile = "../../deploy/kubernetes/daemonset.yaml"

// TestDaemonSetManifest decodes the DaemonSet with the Kubernetes API types
// strictly (an unknown or misspelled field fails, as the API server's
// strict validation would) and checks what the deployment relies on: host
// PID, the least capabilities, a read-only root, limits, scrape
// annotations that match the port, and arguments the tuple CLI accepts.
func TestDaemonSetManifest(t *testing.T) {
	b, err := os.ReadFile(daemonSetFile)
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("%s does not decode strictly as a DaemonSet: %v", daemonSetFile, err)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion/kind = %s/%s", ds.APIVersion, ds.Kind)
	}
	pod := ds.Spec.Template
	for k, v := range ds.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, pod.Labels)
		}
	}
	if !pod.Spec.HostPID {
		t.Error("hostPID is off: the exporter could not see other pods' processes and namespaces")
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	checkContainerSecurity(t, c)
	checkScrapePort(t, pod, c)
	checkArgsParse(t, c.Args)
}

// checkContainerSecurity: the container runs unprivileged with exactly
// the capabilities the exporter needs, a read-only root and limits.
func checkContainerSecurity(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("the container is privileged; it needs only the listed capabilities")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want ALL", sc.Capabilities.Drop)
	}
	want := []corev1.Capability{"SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "BPF", "PERFMON"}
	if !slices.Equal(sc.Capabilities.Add, want) {
		t.Errorf("capabilities add %v, want exactly %v", sc.Capabilities.Add, want)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("root filesystem is writable")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
	}
}

// checkScrapePort: the scrape annotations, the container port and
// --listen agree.
func checkScrapePort(t *testing.T, pod corev1.PodTemplateSpec, c corev1.Container) {
	t.Helper()
	if pod.Annotations["prometheus.io/scrape"] != "true" || pod.Annotations["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", pod.Annotations)
	}
	port := pod.Annotations["prometheus.io/port"]
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("container ports %v do not match prometheus.io/port %q", c.Ports, port)
	}
	var listen string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			listen = v
		}
	}
	if _, p, err := net.SplitHostPort(listen); err != nil || p != port {
		t.Errorf("--listen=%q does not serve prometheus.io/port %q", listen, port)
	}
}

// checkArgsParse: the tuple CLI accepts the arguments: the command exists
// and every flag parses.
func checkArgsParse(t *testing.T, args []string) {
	t.Helper()
	root := NewRoot(Streams{In: strings.NewReader(""), Out: &strings.Builder{}, Err: &strings.Builder{}})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == root {
		t.Fatalf("tuple %v: no such command: %v", args, err)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Errorf("tuple %v: %v", args, err)
	}
	if n := cmd.Flags().NArg(); n != 0 {
		t.Errorf("tuple %v: %d stray arguments", args, n)
	}
}
