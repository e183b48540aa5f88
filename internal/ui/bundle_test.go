package ui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestBundleIsCurrent fails when the committed page (internal/ui/dist) was
// not built from the sources in web/: rebuild it with `make ui`.
func TestBundleIsCurrent(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(root, "web")
	var paths []string
	for _, name := range []string{"package.json", "package-lock.json", "index.html"} {
		paths = append(paths, "web/"+name)
	}
	entries, err := os.ReadDir(web)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasPrefix(e.Name(), "vite.config") {
			paths = append(paths, "web/"+e.Name())
		}
	}
	err = filepath.WalkDir(filepath.Join(web, "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		paths = append(paths, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(p))
		h.Write([]byte{0})
		h.Write(data)
		h.Write([]byte{0})
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := fs.ReadFile(Assets(), "SOURCE_HASH")
	if err != nil {
		t.Fatalf("the page is not built (%v): run make ui", err)
	}
	if string(bytes.TrimSpace(got)) != want {
		t.Fatalf("internal/ui/dist was built from other sources than web/ holds (built from %s, sources are %s): run make ui and commit internal/ui/dist", bytes.TrimSpace(got), want)
	}
	if page, err := fs.ReadFile(Assets(), "index.html"); err != nil || !bytes.Contains(page, []byte("<!--tinymod-meta-->")) {
		t.Errorf("index.html has no <!--tinymod-meta--> for the session's token: %v", err)
	}
}
