// Kernel modules: the build writes /lib/modules/load.list and the init loads each
// module in it, in order, with finit_module(2).
//
// load.list format, one module per line, dependencies before the modules that need
// them (the build resolves modules.dep; the init does no resolution of its own):
//
//	/lib/modules/6.1.0-18-cloud-amd64/kernel/drivers/block/loop.ko max_loop=8
//
// The first word is the module's absolute path inside the initramfs; any further
// words are module parameters, passed to the kernel as written. Blank lines and
// lines starting with # are ignored. .ko files load as they are; .ko.xz, .ko.zst and
// .ko.gz load with MODULE_INIT_COMPRESSED_FILE (the kernel decompresses them).
package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
	"unsafe"
)

const (
	loadListPath = "/lib/modules/load.list"
	// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE of linux/module.h (5.17+).
	moduleInitCompressedFile = 4
)

type module struct {
	path   string
	params string
}

func (m module) name() string {
	return strings.SplitN(path.Base(m.path), ".ko", 2)[0]
}

func (m module) compressed() bool {
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(m.path, ext) {
			return true
		}
	}
	return false
}

// readLoadList reads the list; a missing list means no modules (a kernel with
// everything built in).
func readLoadList(file string) ([]module, error) {
	text, err := readIfExists(file)
	if err != nil {
		return nil, err
	}
	return parseLoadList(text)
}

// readIfExists is the file's text, or "" when there is no such file.
func readIfExists(file string) (string, error) {
	text, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return string(text), err
}

// parseLoadList keeps the list's order: it is the load order.
func parseLoadList(text string) ([]module, error) {
	var mods []module
	for n, line := range strings.Split(text, "\n") {
		words := strings.Fields(line)
		if len(words) == 0 || strings.HasPrefix(words[0], "#") {
			continue
		}
		p := words[0]
		if !path.IsAbs(p) || path.Clean(p) != p {
			return nil, fmt.Errorf("line %d: %q is not a clean absolute path", n+1, p)
		}
		if !strings.HasSuffix(p, ".ko") && !(module{path: p}).compressed() {
			return nil, fmt.Errorf("line %d: %q is not a .ko, .ko.xz, .ko.zst or .ko.gz file",
				n+1, p)
		}
		mods = append(mods, module{path: p, params: strings.Join(words[1:], " ")})
	}
	return mods, nil
}

func loadModules(mods []module) error {
	for _, m := range mods {
		if err := loadModule(m); err != nil {
			return fmt.Errorf("%s (%s): %w", m.name(), m.path, err)
		}
	}
	return nil
}

// loadModule calls finit_module; a module already loaded (EEXIST) is success, and so
// is one that finds nothing here to serve (ENODEV: efivarfs on BIOS firmware).
func loadModule(m module) error {
	f, err := os.Open(m.path)
	if err != nil {
		return err
	}
	defer f.Close()
	params, err := syscall.BytePtrFromString(m.params)
	if err != nil {
		return err
	}
	flags := 0
	if m.compressed() {
		flags = moduleInitCompressedFile
	}
	_, _, errno := syscall.Syscall(sysFinitModule, f.Fd(), uintptr(unsafe.Pointer(params)),
		uintptr(flags))
	switch {
	case errno == 0 || errno == syscall.EEXIST || errno == syscall.ENODEV:
		return nil
	case m.compressed():
		return fmt.Errorf("%w (a compressed module needs a kernel built with "+
			"CONFIG_MODULE_DECOMPRESS for its format; or ship it uncompressed)", errno)
	default:
		return errno
	}
}
