// Signals to PID 1. The kernel delivers only the signals PID 1 handles, and the Go
// runtime handles them all, by default by exiting, which would panic the kernel. So
// init takes them itself: busybox's poweroff and reboot applets signal PID 1 (USR2,
// TERM) and are obeyed; the rest are logged and ignored. signal.Ignore would not do:
// an ignored signal stays ignored in the shell and its children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func handleSignals() {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGPIPE)
	go func() {
		for sig := range ch {
			switch sig {
			case syscall.SIGUSR2:
				powerOff()
			case syscall.SIGTERM:
				restart()
			default:
				say("ignoring signal " + sig.String())
			}
		}
	}()
}

func restart() {
	say("rebooting")
	syscall.Sync()
	err := syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	say("reboot: " + err.Error())
	halt()
}
