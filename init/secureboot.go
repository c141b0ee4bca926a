// Secure Boot state: what the firmware says in its SecureBoot variable, read through
// efivarfs, for the banner.
package main

import (
	"errors"
	"os"
	"syscall"
)

const (
	efiDir        = "/sys/firmware/efi"
	efivarsDir    = efiDir + "/efivars"
	secureBootVar = efivarsDir + "/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
)

// secureBootState is "1" when the firmware booted with Secure Boot on, "0" when it
// is an EFI firmware with it off, and "" when there is no EFI firmware (BIOS).
// efivarfs is mounted read-only here, before the switch to the new root.
func secureBootState() string {
	if _, err := os.Stat(efiDir); err != nil {
		return ""
	}
	err := syscall.Mount("efivarfs", efivarsDir, "efivarfs",
		syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "")
	if err != nil && !errors.Is(err, syscall.EBUSY) {
		return "0"
	}
	data, err := os.ReadFile(secureBootVar)
	return parseSecureBoot(data, err)
}

// parseSecureBoot reads the variable as efivarfs gives it: four bytes of attributes,
// then the one-byte value.
func parseSecureBoot(data []byte, err error) string {
	if err == nil && len(data) == 5 && data[4] == 1 {
		return "1"
	}
	return "0"
}
