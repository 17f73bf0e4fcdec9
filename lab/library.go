package lab

import (
	"embed"
	"io/fs"
	"sort"
	"strings"
	"unicode/utf8"
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

// maxDescription bounds a description (Description), in runes.
const maxDescription = 240

// Description is what a scenario file says it is about, for tuple lab
// --list: the first sentence of its leading comment paragraph (the comment
// lines before the first blank line, empty comment or other line, joined
// with spaces). A sentence ends at '.', '?' or '!' before a space, or at
// the paragraph's end; one longer than maxDescription runes is cut at
// a word boundary and ends in "…", never mid-word.
func Description(text []byte) string {
	var para []string
	for _, l := range strings.Split(string(text), "\n") {
		t, ok := strings.CutPrefix(strings.TrimSpace(l), "#")
		t = strings.TrimSpace(t)
		if !ok || t == "" {
			if len(para) > 0 {
				break
			}
			continue
		}
		para = append(para, t)
	}
	return shorten(firstSentence(strings.Join(para, " ")), maxDescription)
}

// firstSentence is s up to its first sentence end: '.', '?' or '!'
// followed by a space, but not the dot of "e.g." or "i.e."; all of s when
// it has none.
func firstSentence(s string) string {
	for i := 0; i+1 < len(s); i++ {
		if !strings.ContainsRune(".?!", rune(s[i])) || s[i+1] != ' ' {
			continue
		}
		word := strings.ToLower(s[strings.LastIndexByte(s[:i], ' ')+1 : i])
		if word != "e.g" && word != "i.e" {
			return s[:i+1]
		}
	}
	return s
}

// shorten is s when it has at most n runes; else s cut at a word boundary
// that leaves room for "…", without the punctuation before the cut, and
// "…".
func shorten(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	cut := s[:len(string([]rune(s)[:n-1]))]
	if !strings.HasPrefix(s[len(cut):], " ") { // mid-word: back to the word's start
		if i := strings.LastIndexByte(cut, ' '); i > 0 {
			cut = cut[:i]
		}
	}
	return strings.TrimRight(cut, " ,;:-") + "…"
}
