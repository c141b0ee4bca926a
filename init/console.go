// The console: where progress lines, errors and the banner go, and what the shell gets.
package main

import (
	"os"
	"syscall"
)

// outputs are the files every line is written to: stdout, plus /dev/console once
// devtmpfs is mounted if the kernel did not already give it to us as stdout.
var (
	outputs = []*os.File{os.Stdout}
	console *os.File
)

// say writes one progress or error line, prefixed "init: ".
func say(message string) {
	emit("init: " + message)
}

// emit writes one line as is, in one write per output so lines do not interleave.
func emit(line string) {
	for _, f := range outputs {
		_, _ = f.WriteString(line + "\n")
	}
}

// attachConsole opens /dev/console. When the kernel could not open it for us (the
// initramfs had no /dev/console), it becomes fds 0, 1 and 2.
func attachConsole() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		say("no /dev/console: " + err.Error())
		return
	}
	console = f
	var out, con syscall.Stat_t
	if syscall.Fstat(1, &out) != nil {
		for fd := 0; fd <= 2; fd++ {
			_ = syscall.Dup3(int(f.Fd()), fd, 0)
		}
		return
	}
	if syscall.Fstat(int(f.Fd()), &con) == nil && out.Mode&syscall.S_IFMT == syscall.S_IFCHR &&
		out.Rdev == con.Rdev {
		return
	}
	outputs = append(outputs, f)
}
