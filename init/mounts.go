// Mounts: the kernel filesystems, the overlay root and the switch into it.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Where the root's layers are mounted inside the initramfs. After the switch they
// are no longer reachable by path but stay mounted: the overlay holds them.
const (
	lowerDir   = "/lower"   // the squashfs, read-only
	overlayDir = "/overlay" // a tmpfs holding upper/ and work/
)

// From linux/magic.h: the filesystems an initramfs root can be.
const (
	ramfsMagic = 0x858458f6
	tmpfsMagic = 0x01021994
)

type mountSpec struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

func mount(m mountSpec) error {
	if err := os.MkdirAll(m.target, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount(m.source, m.target, m.fstype, m.flags, m.data); err != nil {
		return fmt.Errorf("%s on %s: %w", m.fstype, m.target, err)
	}
	return nil
}

// mountEarly mounts /proc, /sys and /dev. A kernel with DEVTMPFS_MOUNT may already
// have mounted /dev (EBUSY): that is fine.
func mountEarly() error {
	const safe = syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC
	for _, m := range []mountSpec{
		{"proc", "/proc", "proc", safe, ""},
		{"sysfs", "/sys", "sysfs", safe, ""},
		{"devtmpfs", "/dev", "devtmpfs", syscall.MS_NOSUID, "mode=0755"},
	} {
		if err := mount(m); err != nil && !errors.Is(err, syscall.EBUSY) {
			return err
		}
	}
	return nil
}

// mountOverlayRoot mounts the squashfs on loopDev read-only and a writable overlay
// of it, backed by a tmpfs, on /newroot. extensions are the mounted extension
// layers, bottom first: they lie above the squashfs, the last one on top.
func mountOverlayRoot(loopDev string, extensions []string) error {
	if err := mount(mountSpec{loopDev, lowerDir, "squashfs", syscall.MS_RDONLY, ""}); err != nil {
		return err
	}
	if err := mount(mountSpec{"tmpfs", overlayDir, "tmpfs", 0, "mode=0755"}); err != nil {
		return err
	}
	upper, work := overlayDir+"/upper", overlayDir+"/work"
	for _, dir := range []string{upper, work} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		lowerDirs(extensions), upper, work)
	return mount(mountSpec{"overlay", newRoot, "overlay", 0, opts})
}

// lowerDirs is overlayfs's lowerdir= value: the top layer first, the squashfs last.
func lowerDirs(extensions []string) string {
	dirs := make([]string, 0, len(extensions)+1)
	for i := len(extensions) - 1; i >= 0; i-- {
		dirs = append(dirs, extensions[i])
	}
	return strings.Join(append(dirs, lowerDir), ":")
}

// switchRoot moves /proc, /sys and /dev into root, frees the initramfs and makes
// root the new /, as util-linux switch_root does.
func switchRoot(root string) error {
	for _, dir := range []string{"/proc", "/sys", "/dev"} {
		target := root + dir
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(dir, target, "", syscall.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s to %s: %w", dir, target, err)
		}
	}
	if err := freeInitramfs("/"); err != nil {
		say("freeing the initramfs: " + err.Error())
	}
	if err := syscall.Chdir(root); err != nil {
		return err
	}
	if err := syscall.Mount(".", "/", "", syscall.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", root, err)
	}
	if err := syscall.Chroot("."); err != nil {
		return err
	}
	return syscall.Chdir("/")
}

// freeInitramfs deletes the initramfs's files to give their memory back, if root is
// a ramfs or tmpfs: nothing else could be an initramfs, and deleting a disk root
// would be a disaster. It stays on root's filesystem: mounts below it (/newroot,
// /lower, /overlay) are not entered. /rootfs.sqsh's memory is freed only when its
// loop device lets go of it, that is never while the system runs.
func freeInitramfs(root string) error {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(root, &fs); err != nil {
		return err
	}
	if fs.Type != ramfsMagic && fs.Type != tmpfsMagic {
		return fmt.Errorf("%s is not a ramfs or tmpfs (magic %#x); left alone", root, fs.Type)
	}
	return removeContents(root)
}

// removeContents removes everything below dir that is on dir's filesystem, and
// the directories left empty; directories holding mount points stay.
func removeContents(dir string) error {
	var top syscall.Stat_t
	if err := syscall.Lstat(dir, &top); err != nil {
		return err
	}
	return removeOnDevice(dir, top.Dev)
}

func removeOnDevice(dir string, dev uint64) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var firstErr error
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil || uint64(st.Dev) != dev {
			continue // vanished, or another filesystem mounted here
		}
		if e.IsDir() {
			if err := removeOnDevice(p, dev); err != nil && firstErr == nil {
				firstErr = err
			}
			if err := syscall.Rmdir(p); err != nil && !errors.Is(err, syscall.ENOTEMPTY) &&
				firstErr == nil {
				firstErr = err
			}
			continue
		}
		if err := syscall.Unlink(p); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
