package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The same vectors are in tests/test_meta_format.py: both sides agree byte for byte.
const (
	vectorCmdline = "AAAACgALaGVsbG8gd29ybGT_AALDqQ"
	vectorCopyHex = "42474d4554410001" +
		"f1ddf0fe0a6e5fa97fadf1ef916763d2ca008ad43418b020b3ef9c5eaac5f7a0" +
		"0000000a000b68656c6c6f20776f726c64ff0002c3a9ffffff"
)

var vectorValues = metaValues{0x0: "", 0xa: "hello world", 0xff: "é"}

// vectorPartition is encode_partition(VALUES, size=256): two 128-byte copies.
func vectorPartition(t *testing.T) []byte {
	c, err := hex.DecodeString(vectorCopyHex)
	if err != nil {
		t.Fatal(err)
	}
	c = append(c, make([]byte, 128-len(c))...)
	return append(append([]byte{}, c...), c...)
}

func TestMetaVectors(t *testing.T) {
	got, err := decodeMetaPartition(vectorPartition(t))
	if err != nil || !reflect.DeepEqual(got, vectorValues) {
		t.Fatalf("partition: got %q, %v", got, err)
	}
	got, err = decodeMetaCmdline(vectorCmdline)
	if err != nil || !reflect.DeepEqual(got, vectorValues) {
		t.Fatalf("cmdline: got %q, %v", got, err)
	}
}

func TestMetaFirstValidCopyWins(t *testing.T) {
	for _, where := range []int{0, 7, 20, 45, 127} {
		data := vectorPartition(t)
		data[where] ^= 0x40
		got, err := decodeMetaPartition(data)
		if err != nil || !reflect.DeepEqual(got, vectorValues) {
			t.Errorf("byte %d flipped: got %q, %v", where, got, err)
		}
	}
	data := vectorPartition(t)
	data[50] ^= 1
	data[128+50] ^= 1
	if _, err := decodeMetaPartition(data); err == nil {
		t.Fatal("both copies corrupt: no error")
	}
	if _, err := decodeMetaPartition(make([]byte, 1<<20)); err == nil {
		t.Fatal("zeros: no error")
	}
}

func TestMetaCmdlineRejects(t *testing.T) {
	for _, v := range []string{
		"CgAFaGVsbG8LAA",    // the last entry cut
		"CgAFaGVsbG8LAAF4=", // padding
		"CgAF+GVsbG8LAAF4",  // not the URL alphabet
		"CwABeAoABWhlbGxv",  // 0xb before 0xa
		"CgAC__4",           // a value that is not UTF-8, as the Python writer refuses
	} {
		if got, err := decodeMetaCmdline(v); err == nil {
			t.Errorf("%s: got %q, want an error", v, got)
		}
	}
	if got, err := decodeMetaCmdline(""); err != nil || len(got) != 0 {
		t.Errorf("empty: got %q, %v", got, err)
	}
}

func TestMetaString(t *testing.T) {
	if got := metaString(vectorValues); got != "0x0=,0xa=hello world,0xff=é" {
		t.Fatalf("got %q", got)
	}
}

// TestScanBlock fakes /sys/class/block: loop devices (virtual) do not count as
// disks; a partition whose uevent says PARTNAME=META is found by its DEVNAME.
func TestScanBlock(t *testing.T) {
	root := t.TempDir()
	sys := filepath.Join(root, "class", "block")
	add := func(name, devpath, uevent string) {
		dir := filepath.Join(root, "devices", devpath, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "uevent"), []byte(uevent), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(sys, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../devices/"+devpath+"/"+name, filepath.Join(sys, name)); err != nil {
			t.Fatal(err)
		}
	}
	add("loop0", "virtual/block", "MAJOR=7\nMINOR=0\nDEVNAME=loop0\nDEVTYPE=disk\n")
	if dev, disks := scanBlock(sys); dev != "" || disks {
		t.Fatalf("loop only: got %q, %v", dev, disks)
	}
	add("vda", "pci0000:00/0000:00:04.0/virtio1/block", "DEVNAME=vda\nDEVTYPE=disk\n")
	add("vda1", "pci0000:00/0000:00:04.0/virtio1/block/vda",
		"DEVNAME=vda1\nDEVTYPE=partition\nPARTN=1\nPARTNAME=EFI\n")
	if dev, disks := scanBlock(sys); dev != "" || !disks {
		t.Fatalf("no META: got %q, %v", dev, disks)
	}
	add("vda4", "pci0000:00/0000:00:04.0/virtio1/block/vda",
		"MAJOR=254\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=META\n")
	if dev, disks := scanBlock(sys); dev != "/dev/vda4" || !disks {
		t.Fatalf("META: got %q, %v", dev, disks)
	}
	if dev := findMetaPartition(sys); dev != "/dev/vda4" {
		t.Fatalf("findMetaPartition: got %q", dev)
	}
	if dev := findMetaPartition(filepath.Join(root, "none")); dev != "" {
		t.Fatalf("no /sys/class/block: got %q", dev)
	}
}

func TestDecodeMetaEntriesEndMarker(t *testing.T) {
	// Key 0xff with a 2-byte value is an entry, not the end marker; bytes after the
	// marker are ignored.
	data := []byte{0xff, 0x00, 0x02, 'h', 'i', 0xff, 0xff, 0xff, 1, 2, 3}
	got, err := decodeMetaEntries(data, true)
	if err != nil || !reflect.DeepEqual(got, metaValues{0xff: "hi"}) {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := decodeMetaEntries(data[:5], true); err == nil {
		t.Fatal("no end marker: no error")
	}
	if !bytes.Equal(metaEnd, []byte{0xff, 0xff, 0xff}) {
		t.Fatal("end marker changed")
	}
}
