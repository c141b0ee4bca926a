package main

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestParseLoadListKeepsOrder(t *testing.T) {
	got, err := parseLoadList(`# dependencies first
/lib/modules/6.1.0-18-cloud-amd64/kernel/drivers/block/loop.ko max_loop=8

/lib/modules/6.1.0-18-cloud-amd64/kernel/fs/squashfs/squashfs.ko.xz
  /lib/modules/6.1.0-18-cloud-amd64/kernel/fs/overlayfs/overlay.ko.zst  
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []module{
		{"/lib/modules/6.1.0-18-cloud-amd64/kernel/drivers/block/loop.ko", "max_loop=8"},
		{"/lib/modules/6.1.0-18-cloud-amd64/kernel/fs/squashfs/squashfs.ko.xz", ""},
		{"/lib/modules/6.1.0-18-cloud-amd64/kernel/fs/overlayfs/overlay.ko.zst", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	names := []string{got[0].name(), got[1].name(), got[2].name()}
	if !reflect.DeepEqual(names, []string{"loop", "squashfs", "overlay"}) {
		t.Fatalf("names %q", names)
	}
	if got[0].compressed() || !got[1].compressed() || !got[2].compressed() {
		t.Fatal("compressed() is wrong")
	}
}

func TestParseLoadListRejects(t *testing.T) {
	for _, text := range []string{
		"kernel/fs/overlayfs/overlay.ko",
		"/lib/modules/../overlay.ko",
		"/lib/modules/x/overlay.ko.bz2",
		"/lib/modules/x/overlay",
	} {
		if _, err := parseLoadList(text); err == nil {
			t.Errorf("%q: no error", text)
		}
	}
}

func TestReadLoadListMissingIsEmpty(t *testing.T) {
	mods, err := readLoadList(filepath.Join(t.TempDir(), "load.list"))
	if err != nil || mods != nil {
		t.Fatalf("got %v, %v", mods, err)
	}
}
