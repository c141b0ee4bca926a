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
	facts := bootFacts("quiet")
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
