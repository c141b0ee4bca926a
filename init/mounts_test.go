package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestRemoveContents(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{"init", "lib/modules/k/a.ko", "lib/modules/load.list"} {
		path := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/nowhere", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := removeContents(root); err != nil {
		t.Fatal(err)
	}
	left, err := os.ReadDir(root)
	if err != nil || len(left) != 0 {
		t.Fatalf("left %v, %v", left, err)
	}
}
