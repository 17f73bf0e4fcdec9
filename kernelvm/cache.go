package kernelvm

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CacheDir is where scripts/fetch-kernels leaves kernels: $TUPLE_KERNELS,
// or tuple/kernels in the user's cache directory.
func CacheDir() string {
	if d := os.Getenv("TUPLE_KERNELS"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = filepath.Join(os.TempDir(), "cache")
	}
	return filepath.Join(base, "tuple", "kernels")
}

// Kernel is a kernel image to boot and the directory of its modules.
type Kernel struct {
	Name    string // as asked for: "6.1", or the image's path
	Image   string // vmlinuz
	Modules string // directory with modules.order; empty when there is none
}

// Resolve finds a kernel by short name in CacheDir ("6.1" is
// CacheDir()/6.1/vmlinuz) or by the path of its image. The modules are
// the "modules" directory beside the image, when it exists.
func Resolve(name string) (Kernel, error) {
	k := Kernel{Name: name}
	switch {
	case strings.ContainsRune(name, os.PathSeparator):
		k.Image = name
	default:
		k.Image = filepath.Join(CacheDir(), name, "vmlinuz")
	}
	fi, err := os.Stat(k.Image)
	if err != nil {
		if !strings.ContainsRune(name, os.PathSeparator) {
			return k, fmt.Errorf("kernel %q: not in %s (scripts/fetch-kernels fetches 5.10, 6.1 and 6.12), and not a path", name, CacheDir())
		}
		return k, fmt.Errorf("kernel %q: %w", name, err)
	}
	if fi.IsDir() {
		return k, fmt.Errorf("kernel %q: a directory, not a kernel image", name)
	}
	if m := filepath.Join(filepath.Dir(k.Image), "modules"); fileExists(filepath.Join(m, "modules.order")) {
		k.Modules = m
	}
	return k, nil
}
