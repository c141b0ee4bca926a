// The ls probe: buildgraph.ls=/path[,/path...] prints what the booted root holds at
// each path, one line each, so boot tests can look inside without a shell:
//
//	ls /etc: dir group hostname passwd
//	ls /etc/hostname: file 10
//	ls /nonexistent: absent
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
)

const lsParam = "buildgraph.ls"

// lsPaths are the paths of every buildgraph.ls parameter, in order.
func lsPaths(params []param) []string {
	var paths []string
	for _, p := range params {
		if p.key != lsParam {
			continue
		}
		for _, path := range strings.Split(p.value, ",") {
			if path != "" {
				paths = append(paths, path)
			}
		}
	}
	return paths
}

// lsLine describes path: absent, a directory with its sorted entries, or a file
// (anything else, symbolic links followed) with its size.
func lsLine(path string) string {
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Sprintf("ls %s: absent", path)
	case err != nil:
		return fmt.Sprintf("ls %s: error %v", path, err)
	case !info.IsDir():
		return fmt.Sprintf("ls %s: file %d", path, info.Size())
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return fmt.Sprintf("ls %s: error %v", path, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	sort.Strings(names)
	return strings.TrimRight(fmt.Sprintf("ls %s: dir %s", path, strings.Join(names, " ")), " ")
}
