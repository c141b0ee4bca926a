// The kernel command line: split as the kernel's own next_arg() does, so a quoted
// value with spaces is one parameter.
package main

import (
	"os"
	"strings"
)

const poweroffParam = "buildgraph.poweroff"

type param struct {
	key, value string
}

// readCmdline is /proc/cmdline, trimmed; empty when it cannot be read.
func readCmdline() string {
	b, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		say("read /proc/cmdline: " + err.Error())
		return ""
	}
	return strings.TrimSpace(string(b))
}

// parseCmdline splits a command line into parameters in order. Whitespace inside
// double quotes does not split; the quotes themselves are dropped, as the kernel
// does for `key="a b"`. A word without "=" has an empty value.
func parseCmdline(line string) []param {
	var params []param
	var word strings.Builder
	inWord, quoted := false, false
	flush := func() {
		if inWord {
			key, value, _ := strings.Cut(word.String(), "=")
			params = append(params, param{key, value})
		}
		word.Reset()
		inWord = false
	}
	for _, r := range line {
		switch {
		case r == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			flush()
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	flush()
	return params
}

// wantPoweroff: the last buildgraph.poweroff wins; 1, true, yes and on mean yes.
func wantPoweroff(params []param) bool {
	want := false
	for _, p := range params {
		if p.key == poweroffParam {
			switch strings.ToLower(p.value) {
			case "1", "true", "yes", "on":
				want = true
			default:
				want = false
			}
		}
	}
	return want
}

// withoutBootImage drops the BOOT_IMAGE= word GRUB puts first, so the banner shows the
// command line the build asked for (what _out/cmdline-<platform>-<arch> holds).
func withoutBootImage(line string) string {
	first, rest, _ := strings.Cut(line, " ")
	if strings.HasPrefix(first, "BOOT_IMAGE=") {
		return rest
	}
	return line
}
