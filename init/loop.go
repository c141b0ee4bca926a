// Loop devices: attach the root image to a free /dev/loopN, read-only and
// auto-clearing, so it can be mounted as a block device.
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// From linux/loop.h.
const (
	loopCtlGetFree   = 0x4C82
	loopSetFd        = 0x4C00
	loopClrFd        = 0x4C01
	loopSetStatus64  = 0x4C04
	loFlagsReadOnly  = 1
	loFlagsAutoclear = 4
	loNameSize       = 64
)

// loopInfo64 is struct loop_info64; its fields need no padding on 64-bit arches.
type loopInfo64 struct {
	device, inode, rdevice, offset, sizelimit  uint64
	number, encryptType, encryptKeySize, flags uint32
	fileName                                   [loNameSize]byte
	cryptName                                  [loNameSize]byte
	encryptKey                                 [32]byte
	init                                       [2]uint64
}

func ioctl(fd, req, arg uintptr) (uintptr, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// ioctlPtr converts the pointer in the Syscall call itself, as unsafe.Pointer's
// rules require, so the argument stays valid for the call.
func ioctlPtr(fd, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// attachLoop returns the loop device now backed by image, and an open file of it.
// The image is opened read-only, which makes the loop device read-only. AUTOCLEAR
// detaches the device at its last close, so the caller must keep the file open
// until the device is mounted; from then on the mount keeps it attached.
func attachLoop(image string) (*os.File, error) {
	backing, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer backing.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	// Another opener may take the free device between GET_FREE and SET_FD; as PID 1
	// nobody should, but a few tries cost nothing.
	for try := 0; ; try++ {
		n, err := ioctl(ctl.Fd(), loopCtlGetFree, 0)
		if err != nil {
			return nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		loop, err := setLoop(fmt.Sprintf("/dev/loop%d", n), backing, image)
		if errors.Is(err, syscall.EBUSY) && try < 5 {
			continue
		}
		return loop, err
	}
}

func setLoop(dev string, backing *os.File, image string) (*os.File, error) {
	loop, err := openRetry(dev, 2*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := ioctl(loop.Fd(), loopSetFd, backing.Fd()); err != nil {
		loop.Close()
		return nil, fmt.Errorf("LOOP_SET_FD %s: %w", dev, err)
	}
	info := loopInfo64{flags: loFlagsReadOnly | loFlagsAutoclear}
	copy(info.fileName[:loNameSize-1], image)
	if err := ioctlPtr(loop.Fd(), loopSetStatus64, unsafe.Pointer(&info)); err != nil {
		_, _ = ioctl(loop.Fd(), loopClrFd, 0) // AUTOCLEAR is not set: detach by hand
		loop.Close()
		return nil, fmt.Errorf("LOOP_SET_STATUS64 %s: %w", dev, err)
	}
	return loop, nil
}

// openRetry opens a device node that devtmpfs may not have created yet.
func openRetry(dev string, wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		f, err := os.OpenFile(dev, os.O_RDONLY, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
