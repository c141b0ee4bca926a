package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseExtensions(t *testing.T) {
	// As yaml.safe_dump writes it: keys sorted, long strings folded onto indented
	// continuation lines, numbers-looking versions quoted.
	text := `layers:
- image: 000-hello.sqsh
  metadata:
    author: buildgraph
    description: 'a very long description a very long description a very long description
      a very long description
      name: not-this'
    name: hello
    version: 1.0.0
- image: 001-firmware.sqsh
  metadata:
    author: 'x: y'
    description: "line1\nline2"
    name: firmware
    version: '20261201'
- image: "002-c.sqsh"
  metadata:
    name: c
    version: "1.0"
`
	got, err := parseExtensions(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []extension{
		{"000-hello.sqsh", "hello", "1.0.0"},
		{"001-firmware.sqsh", "firmware", "20261201"},
		{"002-c.sqsh", "c", "1.0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
}

func TestParseExtensionsIndentedListAndOtherOrder(t *testing.T) {
	text := "other: 1\nlayers:\n  - metadata:\n      version: 2\n      name: b\n    image: b.sqsh\n"
	got, err := parseExtensions(text)
	if err != nil {
		t.Fatal(err)
	}
	if want := []extension{{"b.sqsh", "b", "2"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestParseExtensionsEmpty(t *testing.T) {
	for _, text := range []string{"", "layers: []\n", "layers:\n", "# nothing\n"} {
		got, err := parseExtensions(text)
		if err != nil || len(got) != 0 {
			t.Errorf("%q: got %q, %v", text, got, err)
		}
	}
}

func TestParseExtensionsRejects(t *testing.T) {
	for text, message := range map[string]string{
		"layers:\n- metadata:\n    name: x\n":                     "no image",
		"layers:\n- image: ../x.sqsh\n  metadata:\n    name: x\n": "not a file name",
		"layers:\n- image: x.sqsh\n":                              "no metadata.name",
		"layers: x\n":                                             "block list",
	} {
		_, err := parseExtensions(text)
		if err == nil || !strings.Contains(err.Error(), message) {
			t.Errorf("%q: got %v, want %q", text, err, message)
		}
	}
}

func TestReadExtensionsMissingFile(t *testing.T) {
	got, err := readExtensions(filepath.Join(t.TempDir(), "extensions.yaml"))
	if err != nil || got != nil {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestUnquoteYAML(t *testing.T) {
	for in, want := range map[string]string{
		"1.0.0": "1.0.0", "'1.0'": "1.0", `"1.0"`: "1.0", "'it''s'": "it's",
		`"a\"b"`: `a"b`, "'": "'", "": "",
	} {
		if got := unquoteYAML(in); got != want {
			t.Errorf("unquoteYAML(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLowerDirs(t *testing.T) {
	if got := lowerDirs(nil); got != "/lower" {
		t.Errorf("got %s", got)
	}
	got := lowerDirs([]string{"/extensions-mnt/0", "/extensions-mnt/1"})
	if got != "/extensions-mnt/1:/extensions-mnt/0:/lower" {
		t.Errorf("got %s", got)
	}
}

func TestLs(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b", "a"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("12345"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		dir:                        "ls " + dir + ": dir a b empty",
		empty:                      "ls " + empty + ": dir",
		filepath.Join(dir, "a"):    "ls " + dir + "/a: file 5",
		filepath.Join(dir, "nope"): "ls " + dir + "/nope: absent",
	} {
		if got := lsLine(path); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	params := parseCmdline("buildgraph.ls=/etc,/nonexistent quiet buildgraph.ls=/x,")
	if got := lsPaths(params); !reflect.DeepEqual(got, []string{"/etc", "/nonexistent", "/x"}) {
		t.Errorf("lsPaths: got %q", got)
	}
}
