// The shell: /bin/sh on the console, supervised rather than exec'd so that its exit
// powers the machine off instead of panicking the kernel.
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

var shellEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/",
	"TERM=linux",
}

// runShell starts /bin/sh in its own session with the console as its controlling
// terminal (for job control; without it if the console refuses), and reaps every
// child until the shell exits: PID 1 inherits all orphans.
func runShell() {
	tty := console
	if tty == nil {
		tty = os.Stdout
	}
	fd := tty.Fd()
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   shellEnv,
		Files: []uintptr{fd, fd, fd},
		Sys:   &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	say("starting " + shellPath)
	pid, err := syscall.ForkExec(shellPath, []string{"sh"}, attr)
	if err != nil {
		attr.Sys = &syscall.SysProcAttr{Setsid: true}
		pid, err = syscall.ForkExec(shellPath, []string{"sh"}, attr)
	}
	if err != nil {
		say(fmt.Sprintf("start %s: %v", shellPath, err))
		return
	}
	for {
		var status syscall.WaitStatus
		got, err := syscall.Wait4(-1, &status, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || got == pid {
			return
		}
	}
}
