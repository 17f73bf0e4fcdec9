package lab

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
)

// library holds the built-in scenario groups, one file per group.
//
//go:embed library/*.lab
var library embed.FS

// Groups lists the built-in groups by name, seed first.
func Groups() []string {
	ents, _ := fs.ReadDir(library, "library")
	var out []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".lab"); ok {
			out = append(out, name)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i] == "seed") != (out[j] == "seed") {
			return out[i] == "seed"
		}
		return out[i] < out[j]
	})
	return out
}

// Builtin returns the text of built-in group name.
func Builtin(name string) ([]byte, bool) {
	if strings.ContainsAny(name, "/\\") {
		return nil, false
	}
	b, err := library.ReadFile("library/" + name + ".lab")
	return b, err == nil
}

// BuiltinFile is the file name results and errors of group name show.
func BuiltinFile(name string) string { return name + ".lab" }
