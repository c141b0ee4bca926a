// System extensions: squashfs images the build appends to the initramfs, listed in
// /extensions.yaml, stacked read-only over the root squashfs in the overlay root.
//
// extensions.yaml is written by the build with PyYAML's safe_dump; the init reads
// just this subset of YAML, line by line (other keys, such as author and
// description, and their continuation lines are skipped):
//
//	layers:
//	- image: 000-hello.sqsh
//	  metadata:
//	    name: hello
//	    version: '1.0'
//
// image is a file name in /extensions/. Later layers lie above earlier ones.
package main

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"syscall"
)

const (
	extensionsFile = "/extensions.yaml"
	extensionsDir  = "/extensions"
	extMountDir    = "/extensions-mnt"
)

type extension struct {
	image, name, version string
}

// String is the banner's form, name@version.
func (e extension) String() string {
	return e.name + "@" + e.version
}

// readExtensions reads the list; a missing file means no extensions.
func readExtensions(file string) ([]extension, error) {
	text, err := readIfExists(file)
	if err != nil {
		return nil, err
	}
	return parseExtensions(text)
}

// parseExtensions reads the layers of an extensions.yaml in order.
func parseExtensions(text string) ([]extension, error) {
	var exts []extension
	var cur *extension
	inLayers, inMetadata := false, false
	base := 0 // the indentation of the current layer's "- "
	finish := func(line int) error {
		if cur == nil {
			return nil
		}
		if err := cur.check(); err != nil {
			return fmt.Errorf("the layer ending at line %d: %w", line, err)
		}
		exts = append(exts, *cur)
		cur = nil
		return nil
	}
	lines := strings.Split(text, "\n")
	for n, raw := range lines {
		line := strings.TrimRight(raw, " \t\r")
		content := strings.TrimLeft(line, " ")
		indent := len(line) - len(content)
		if content == "" || strings.HasPrefix(content, "#") {
			continue
		}
		if indent == 0 && !strings.HasPrefix(content, "-") {
			if err := finish(n); err != nil {
				return nil, err
			}
			key, value := splitKey(content)
			inLayers = key == "layers"
			if inLayers && value != "" && value != "[]" {
				return nil, fmt.Errorf("line %d: layers must be a block list, not %q",
					n+1, value)
			}
			continue
		}
		if !inLayers {
			continue
		}
		if content == "-" || strings.HasPrefix(content, "- ") {
			if cur != nil && indent > base {
				continue // a list nested deeper in a layer
			}
			if err := finish(n); err != nil {
				return nil, err
			}
			cur, base, inMetadata = &extension{}, indent, false
			content = strings.TrimLeft(content[1:], " ")
			indent = base + 2
			if content == "" {
				continue
			}
		}
		if cur == nil || indent <= base {
			continue
		}
		key, value := splitKey(content)
		switch {
		case indent == base+2:
			inMetadata = key == "metadata"
			if key == "image" {
				cur.image = unquoteYAML(value)
			}
		case indent == base+4 && inMetadata:
			switch key {
			case "name":
				cur.name = unquoteYAML(value)
			case "version":
				cur.version = unquoteYAML(value)
			}
		}
	}
	if err := finish(len(lines)); err != nil {
		return nil, err
	}
	return exts, nil
}

func (e extension) check() error {
	switch {
	case e.image == "":
		return errors.New("no image")
	case strings.Contains(e.image, "/") || e.image == "." || e.image == "..":
		return fmt.Errorf("image %q is not a file name", e.image)
	case e.name == "":
		return fmt.Errorf("image %s has no metadata.name", e.image)
	}
	return nil
}

// splitKey splits `key: value` (or `key:`) into key and value.
func splitKey(content string) (string, string) {
	key, value, ok := strings.Cut(content, ":")
	if !ok {
		return "", ""
	}
	return strings.TrimSpace(key), strings.TrimSpace(value)
}

// unquoteYAML strips one level of YAML quotes from a one-line scalar: single
// quotes (a doubled quote inside stands for one) or double quotes (a backslash
// escapes the next character).
func unquoteYAML(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return unquoteShell(v)
	}
	return v
}

// mountExtension mounts the n-th extension's squashfs read-only and returns where.
func mountExtension(n int, e extension) (string, error) {
	image := path.Join(extensionsDir, e.image)
	loop, err := attachLoop(image)
	if err != nil {
		return "", err
	}
	defer loop.Close() // once mounted, the mount holds the device
	dir := fmt.Sprintf("%s/%d", extMountDir, n)
	if err := mount(mountSpec{loop.Name(), dir, "squashfs", syscall.MS_RDONLY, ""}); err != nil {
		return "", err
	}
	say(fmt.Sprintf("extension %s: %s on %s at %s", e, image, loop.Name(), dir))
	return dir, nil
}
