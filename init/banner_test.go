package main

import "testing"

func TestBanner(t *testing.T) {
	got := banner([]field{
		{"version", "1.2.3"},
		{"arch", "amd64"},
		{"cmdline", `console=ttyS0 foo="x"`},
		{"kernel", ""},
	})
	want := `booted version=1.2.3 arch=amd64 cmdline="console=ttyS0 foo=\"x\"" kernel=""`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestQuoteValue(t *testing.T) {
	for in, want := range map[string]string{
		"plain":     "plain",
		"a=b,c":     "a=b,c",
		"":          `""`,
		"a b":       `"a b"`,
		"tab\there": `"tab\there"`,
		`back\`:     `"back\\"`,
		"bell\a":    `"bell\a"`,
		"café":      "café",
	} {
		if got := quoteValue(in); got != want {
			t.Errorf("quoteValue(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	got := parseOSRelease(`# comment
NAME="Buildgraph OS"
VERSION_ID=1.0.0
ID='bg'
PRETTY_NAME="say \"hi\" \\ \$HOME"

BROKEN
`)
	want := map[string]string{
		"NAME":        "Buildgraph OS",
		"VERSION_ID":  "1.0.0",
		"ID":          "bg",
		"PRETTY_NAME": `say "hi" \ $HOME`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestBootFactsOrder(t *testing.T) {
	facts := bootFacts("quiet", nil, metaValues{}, "")
	keys := []string{"version", "arch", "cmdline", "kernel"}
	if len(facts) != len(keys) {
		t.Fatalf("got %v", facts)
	}
	for i, k := range keys {
		if facts[i].key != k {
			t.Errorf("field %d is %s, want %s", i, facts[i].key, k)
		}
	}
}

func TestBannerWithExtensionsAndMeta(t *testing.T) {
	exts := []extension{
		{"000-hello.sqsh", "hello", "1.0.0"},
		{"001-firmware.sqsh", "firmware", "20261201"},
	}
	meta := metaValues{0xb: "x", 0xa: "hello", 0x10: "a b"}
	facts := bootFacts("quiet", exts, meta, "")
	if len(facts) != 6 {
		t.Fatalf("got %v", facts)
	}
	got := banner(facts[4:])
	want := `booted extensions=hello@1.0.0,firmware@20261201 meta="0xa=hello,0xb=x,0x10=a b"`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	facts = bootFacts("quiet", nil, metaValues{0xa: "hello", 0xb: "x"}, "")
	if got := banner(facts[4:]); got != "booted meta=0xa=hello,0xb=x" {
		t.Fatalf("got %s", got)
	}
	facts = bootFacts("quiet", exts[:1], nil, "1")
	if got := banner(facts[4:]); got != "booted extensions=hello@1.0.0 secureboot=1" {
		t.Fatalf("got %s", got)
	}
}
