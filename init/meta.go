// META: the small key/value store of the booted system (keys 0..255), read from a
// partition named META and from the kernel parameter buildgraph.meta=. The format is
// written by buildgraph/formats/meta.py, whose docstring is its definition:
//
//	entries:   key u8 | length u16 big-endian | value, keys increasing
//	partition: two copies, one per half, each
//	           "BGMETA" | version u16 BE (1) | sha256 of the copy with these 32 bytes
//	           zeroed | entries | ff ff ff | zeros
//	cmdline:   buildgraph.meta=<entries, base64url without padding>
//
// The first valid copy wins; a cmdline value wins over the partition's for its key.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	metaParam     = "buildgraph.meta"
	metaPartName  = "META"
	metaVersion   = 1
	metaHeaderLen = 40 // magic 6, version 2, checksum 32
	metaMaxValue  = 0xfffe
)

var (
	metaMagic = []byte("BGMETA")
	metaEnd   = []byte{0xff, 0xff, 0xff}
)

type metaValues map[byte]string

// decodeMetaEntries parses TLV entries. terminated: they end at the end marker and
// the rest of data is ignored; else they fill data exactly.
func decodeMetaEntries(data []byte, terminated bool) (metaValues, error) {
	values := metaValues{}
	pos, last := 0, -1
	for {
		if terminated && bytes.HasPrefix(data[pos:], metaEnd) {
			return values, nil
		}
		if !terminated && pos == len(data) {
			return values, nil
		}
		if pos+3 > len(data) {
			return nil, fmt.Errorf("entries are cut short at byte %d", pos)
		}
		key := data[pos]
		length := int(binary.BigEndian.Uint16(data[pos+1:]))
		pos += 3
		if length > metaMaxValue || pos+length > len(data) {
			return nil, fmt.Errorf("entry %s runs past the end", metaKeyName(key))
		}
		if int(key) <= last {
			return nil, fmt.Errorf("key %s is out of order or repeated", metaKeyName(key))
		}
		last = int(key)
		if !utf8.Valid(data[pos : pos+length]) {
			return nil, fmt.Errorf("value of %s is not UTF-8", metaKeyName(key))
		}
		values[key] = string(data[pos : pos+length])
		pos += length
	}
}

// decodeMetaPartition returns the values of the first valid copy.
func decodeMetaPartition(data []byte) (metaValues, error) {
	half := len(data) / 2
	var problems []string
	for n := 0; n < 2; n++ {
		values, err := decodeMetaCopy(data[n*half : (n+1)*half])
		if err == nil {
			return values, nil
		}
		problems = append(problems, fmt.Sprintf("copy %d: %v", n, err))
	}
	return nil, fmt.Errorf("no valid META copy (%s)", strings.Join(problems, "; "))
}

func decodeMetaCopy(c []byte) (metaValues, error) {
	if len(c) < metaHeaderLen+len(metaEnd) {
		return nil, fmt.Errorf("%d bytes is too short", len(c))
	}
	if !bytes.Equal(c[:6], metaMagic) {
		return nil, fmt.Errorf("bad magic %q", c[:6])
	}
	if v := binary.BigEndian.Uint16(c[6:]); v != metaVersion {
		return nil, fmt.Errorf("version %d is not %d", v, metaVersion)
	}
	h := sha256.New()
	h.Write(c[:8])
	h.Write(make([]byte, 32))
	h.Write(c[metaHeaderLen:])
	if !bytes.Equal(h.Sum(nil), c[8:metaHeaderLen]) {
		return nil, errors.New("checksum mismatch")
	}
	return decodeMetaEntries(c[metaHeaderLen:], true)
}

// decodeMetaCmdline decodes the value of buildgraph.meta=.
func decodeMetaCmdline(value string) (metaValues, error) {
	data, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("not base64url without padding: %w", err)
	}
	return decodeMetaEntries(data, false)
}

func metaKeyName(key byte) string {
	return fmt.Sprintf("0x%x", key)
}

// metaString is the banner's form: 0xa=hello,0xb=x, sorted by key.
func metaString(values metaValues) string {
	keys := make([]int, 0, len(values))
	for k := range values {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = metaKeyName(byte(k)) + "=" + values[byte(k)]
	}
	return strings.Join(parts, ",")
}

// readMeta gathers META from a META partition and the command line (which wins per
// key). Problems are reported and skipped: META never stops the boot.
func readMeta(params []param) metaValues {
	values := metaValues{}
	if dev := findMetaPartition("/sys/class/block"); dev != "" {
		part, err := readMetaPartition(dev)
		if err != nil {
			say(fmt.Sprintf("META on %s: %v", dev, err))
		} else {
			say(fmt.Sprintf("META on %s: %d values", dev, len(part)))
			for k, v := range part {
				values[k] = v
			}
		}
	}
	for _, p := range params {
		if p.key != metaParam {
			continue
		}
		cmd, err := decodeMetaCmdline(p.value)
		if err != nil {
			say(fmt.Sprintf("%s=%s: %v", metaParam, p.value, err))
			continue
		}
		say(fmt.Sprintf("META on the command line: %d values", len(cmd)))
		for k, v := range cmd {
			values[k] = v
		}
	}
	return values
}

func readMetaPartition(dev string) (metaValues, error) {
	f, err := openRetry(dev, 500*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return decodeMetaPartition(data)
}

// findMetaPartition returns /dev/<name> of the first partition named META. Disk
// drivers add their disks and partitions while their module loads, so normally
// there is nothing to wait for; when some real (non-virtual) block device exists
// but no META yet, it looks again for up to a second. With no disk at all (an ISO
// or PXE boot with the CD-ROM driver not loaded) it returns at once.
func findMetaPartition(sysBlock string) string {
	deadline := time.Now().Add(time.Second)
	for {
		dev, disks := scanBlock(sysBlock)
		if dev != "" || !disks || time.Now().After(deadline) {
			return dev
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scanBlock returns the META partition's device node, if any, and whether any
// block device not under /sys/devices/virtual (loop, ram) exists.
func scanBlock(sysBlock string) (string, bool) {
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", false
	}
	disks := false
	for _, e := range entries { // sorted by name: the first META wins
		link, err := os.Readlink(filepath.Join(sysBlock, e.Name()))
		if err == nil && strings.Contains(link, "/devices/virtual/") {
			continue
		}
		disks = true
		text, err := os.ReadFile(filepath.Join(sysBlock, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		uevent := parseUevent(string(text))
		if uevent["PARTNAME"] == metaPartName && uevent["DEVNAME"] != "" {
			return "/dev/" + uevent["DEVNAME"], true
		}
	}
	return "", disks
}

func parseUevent(text string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars
}
