package main

import (
	"reflect"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	got := parseCmdline(`console=ttyS0  quiet buildgraph.poweroff=1 foo="a b" "bar=c d" x=`)
	want := []param{
		{"console", "ttyS0"}, {"quiet", ""}, {"buildgraph.poweroff", "1"},
		{"foo", "a b"}, {"bar", "c d"}, {"x", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := parseCmdline(" \n"); len(got) != 0 {
		t.Fatalf("blank line gave %q", got)
	}
	// A value may hold "=": only the first one splits.
	if got := parseCmdline("root=PARTUUID=abc"); got[0] != (param{"root", "PARTUUID=abc"}) {
		t.Fatalf("got %q", got)
	}
}

func TestWantPoweroff(t *testing.T) {
	for line, want := range map[string]bool{
		"console=ttyS0":                                 false,
		"buildgraph.poweroff=1":                         true,
		"buildgraph.poweroff=yes":                       true,
		"buildgraph.poweroff=0":                         false,
		"buildgraph.poweroff":                           false,
		"buildgraph.poweroff=1 buildgraph.poweroff=0":   false,
		"buildgraph.poweroff=0 buildgraph.poweroff=1":   true,
		"xbuildgraph.poweroff=1 buildgraph.poweroffs=1": false,
	} {
		if got := wantPoweroff(parseCmdline(line)); got != want {
			t.Errorf("%q: got %v, want %v", line, got, want)
		}
	}
}

func TestWithoutBootImage(t *testing.T) {
	for in, want := range map[string]string{
		"BOOT_IMAGE=/boot/vmlinuz console=ttyS0 a=1": "console=ttyS0 a=1",
		"console=ttyS0 BOOT_IMAGE=/x":                "console=ttyS0 BOOT_IMAGE=/x",
		"BOOT_IMAGE=/boot/vmlinuz":                   "",
		"":                                           "",
	} {
		if got := withoutBootImage(in); got != want {
			t.Errorf("withoutBootImage(%q) = %q, want %q", in, got, want)
		}
	}
}
