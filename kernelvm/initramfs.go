package kernelvm

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Where things live inside the guest.
const (
	guestSpec    = "kernelvm/run.json" // the run's description (spec)
	guestModules = "kernelvm/modules"  // the modules, loaded in spec order
	guestBin     = "bin"               // extra tools, on PATH
)

// spec is what the guest's init reads from guestSpec.
type spec struct {
	Args    []string `json:"args"`
	Env     []string `json:"env"`
	Modules []string `json:"modules"` // file names in guestModules, in load order
}

// libDirs are where the dynamic loader of a Debian-like amd64 system finds
// shared libraries (ld.so.conf.d/x86_64-linux-gnu.conf and the defaults).
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// elfDeps lists the files a dynamically linked executable needs to run: its
// interpreter and every DT_NEEDED library, transitively, as absolute paths.
// A static executable needs none.
func elfDeps(exe string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var walk func(file string, top bool) error
	walk = func(file string, top bool) error {
		f, err := elf.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		if top && f.Machine != elf.EM_X86_64 {
			return fmt.Errorf("%s: %v executable; the guest is x86-64", file, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return fmt.Errorf("%s: interpreter: %w", file, err)
			}
			interp := strings.TrimRight(string(b), "\x00")
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				if p := filepath.Join(d, lib); fileExists(p) {
					found = p
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, found in none of %s", file, lib, strings.Join(libDirs, " "))
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := walk(found, false); err != nil {
				return err
			}
		}
		return nil
	}
	return out, walk(exe, true)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// buildInitramfs writes the guest's initramfs to w: cfg.Exe as /init, the
// tools in /bin, every shared library they need at its own path, the
// modules listed in cfg.Modules/modules.order, cfg.Files, and the spec.
func buildInitramfs(w io.Writer, cfg Config) error {
	c := newCPIOWriter(w)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "etc", "root", guestBin, guestModules} {
		if err := c.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := c.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	if err := c.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return err
	}
	// Enough of /etc for programs that look up users and hosts.
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
		"etc/hosts":  "127.0.0.1 localhost\n::1 localhost\n",
	}
	for name, text := range files {
		if err := c.File(name, 0o644, []byte(text)); err != nil {
			return err
		}
	}
	libs := map[string]bool{}
	addExe := func(src, dst string) error {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := c.File(dst, 0o755, data); err != nil {
			return err
		}
		deps, err := elfDeps(src)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if libs[d] {
				continue
			}
			libs[d] = true
			b, err := os.ReadFile(d) // follows the symlink: the guest gets the file itself
			if err != nil {
				return err
			}
			if err := c.File(d, 0o755, b); err != nil {
				return err
			}
		}
		return nil
	}
	if err := addExe(cfg.Exe, "init"); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for _, t := range cfg.Tools {
		p, err := lookTool(t)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		if err := addExe(p, path.Join(guestBin, filepath.Base(p))); err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
	}
	sp := spec{Args: cfg.Args, Env: cfg.Env}
	if cfg.Modules != "" {
		mods, err := readModuleOrder(cfg.Modules)
		if err != nil {
			return fmt.Errorf("initramfs: %w", err)
		}
		for _, m := range mods {
			data, err := os.ReadFile(filepath.Join(cfg.Modules, m))
			if err != nil {
				return fmt.Errorf("initramfs: %w", err)
			}
			if err := c.File(path.Join(guestModules, m), 0o644, data); err != nil {
				return err
			}
			sp.Modules = append(sp.Modules, m)
		}
	}
	for name, data := range cfg.Files {
		if err := c.File(name, 0o644, data); err != nil {
			return err
		}
	}
	js, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	if err := c.File(guestSpec, 0o644, js); err != nil {
		return err
	}
	return c.Close()
}

// readModuleOrder reads dir/modules.order: one module file name a line,
// dependencies first (scripts/fetch-kernels writes it).
func readModuleOrder(dir string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "modules.order"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		if strings.ContainsAny(l, "/\\") || !strings.HasSuffix(l, ".ko") {
			return nil, fmt.Errorf("%s/modules.order: %q is not a module file name", dir, l)
		}
		out = append(out, l)
	}
	return out, nil
}

// lookTool finds an executable by absolute path or on PATH.
func lookTool(name string) (string, error) {
	if filepath.IsAbs(name) {
		if fileExists(name) {
			return name, nil
		}
		return "", fmt.Errorf("tool %s: not found", name)
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH") + ":/usr/sbin:/sbin:/usr/bin:/bin") {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("tool %s: not on PATH", name)
}

// errNoGuest is what the guest reports when it did not say how its
// program ended (it crashed, or the kernel did not boot).
var errNoGuest = errors.New("the guest did not report an exit status")

// initramfsBytes builds the initramfs in memory.
func initramfsBytes(cfg Config) ([]byte, error) {
	var b bytes.Buffer
	err := buildInitramfs(&b, cfg)
	return b.Bytes(), err
}
