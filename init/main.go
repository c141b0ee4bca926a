// Command init is PID 1 of the buildgraph initramfs: it loads the kernel modules the
// root filesystem needs, reads META (meta.go), mounts /rootfs.sqsh as a read-only
// squashfs with any system extensions (extensions.go) above it under a tmpfs
// overlay, switches into it, prints one "booted ..." banner line and then either
// powers off (buildgraph.poweroff=1, for boot tests) or runs /bin/sh on the console.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	rootImage = "/rootfs.sqsh"
	newRoot   = "/newroot"
	shellPath = "/bin/sh"
)

// poweroffWanted is read from /proc/cmdline as soon as /proc is mounted; a fatal
// error before that cannot know it and halts.
var poweroffWanted bool

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "init: not PID 1")
		os.Exit(1)
	}
	// PID 1 must never return or exit: every path below ends in poweroff or halt.
	handleSignals()
	boot()
}

func boot() {
	check("mount /proc /sys /dev", mountEarly())
	attachConsole() // before the first line: the kernel may have given us no console
	say("mounted /proc /sys /dev")
	cmdline := readCmdline()
	params := parseCmdline(cmdline)
	poweroffWanted = wantPoweroff(params)

	mods, err := readLoadList(loadListPath)
	check("read "+loadListPath, err)
	say(fmt.Sprintf("loading %d modules", len(mods)))
	check("load module", loadModules(mods))

	meta := readMeta(params)

	exts, err := readExtensions(extensionsFile)
	check("read "+extensionsFile, err)
	extDirs := make([]string, len(exts))
	for i, e := range exts {
		extDirs[i], err = mountExtension(i, e)
		check(fmt.Sprintf("mount extension %s (%s)", e.image, e), err)
	}

	loop, err := attachLoop(rootImage)
	check("attach "+rootImage, err)
	say(fmt.Sprintf("%s on %s", rootImage, loop.Name()))
	check("mount root", mountOverlayRoot(loop.Name(), extDirs))
	loop.Close() // the squashfs mount holds the device now; AUTOCLEAR frees it after
	if len(exts) > 0 {
		say(fmt.Sprintf("root is an overlay of %d extensions, squashfs and tmpfs", len(exts)))
	} else {
		say("root is an overlay of squashfs and tmpfs")
	}

	secureBoot := secureBootState()
	say("switching root")
	check("switch root", switchRoot(newRoot))

	for _, path := range lsPaths(params) {
		emit(lsLine(path))
	}
	emit(banner(bootFacts(cmdline, exts, meta, secureBoot)))
	if poweroffWanted {
		powerOff()
	}
	runShell()
	say("shell exited")
	powerOff()
}

// bootFacts are the banner's fields, read in the new root: version, arch and cmdline
// first, always in this order, then the kernel release, then the extensions
// (name@version, in layer order) and the META values (key=value, by key) if any,
// then secureboot=0|1 on EFI firmware.
func bootFacts(cmdline string, exts []extension, meta metaValues, secureBoot string) []field {
	version := "unknown"
	for _, path := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if text, err := os.ReadFile(path); err == nil {
			if v := parseOSRelease(string(text))["VERSION_ID"]; v != "" {
				version = v
			}
			break
		}
	}
	facts := []field{
		{"version", version},
		{"arch", runtime.GOARCH},
		{"cmdline", withoutBootImage(cmdline)},
		{"kernel", kernelRelease()},
	}
	if len(exts) > 0 {
		names := make([]string, len(exts))
		for i, e := range exts {
			names[i] = e.String()
		}
		facts = append(facts, field{"extensions", strings.Join(names, ",")})
	}
	if len(meta) > 0 {
		facts = append(facts, field{"meta", metaString(meta)})
	}
	if secureBoot != "" {
		facts = append(facts, field{"secureboot", secureBoot})
	}
	return facts
}

func kernelRelease() string {
	var uts syscall.Utsname
	if syscall.Uname(&uts) != nil {
		return "unknown"
	}
	b := make([]byte, 0, len(uts.Release))
	for _, c := range uts.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

// check stops the boot on err: "init: <what>: <err>" on the console, then poweroff
// if the command line asked for it, else halt so the message stays readable.
func check(what string, err error) {
	if err == nil {
		return
	}
	say(fmt.Sprintf("%s: %v", what, err))
	if poweroffWanted {
		powerOff()
	}
	halt()
}

func powerOff() {
	say("powering off")
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	say(fmt.Sprintf("power off: %v", err))
	halt()
}

// halt sleeps forever. A bare select{} would not do: the Go runtime calls a program
// whose goroutines all block a deadlock and exits, and PID 1 exiting panics the kernel.
func halt() {
	for {
		time.Sleep(time.Hour)
	}
}
