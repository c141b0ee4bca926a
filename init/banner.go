// The banner: the one line boot tests look for once the new root is up.
package main

import (
	"strconv"
	"strings"
	"unicode"
)

type field struct {
	key, value string
}

// banner formats `booted key=value ...` with the fields in the order given. A value
// is double-quoted (strconv.Quote escaping) when it is empty or holds whitespace,
// quotes, backslashes or unprintable characters; otherwise it is written bare.
func banner(fields []field) string {
	var b strings.Builder
	b.WriteString("booted")
	for _, f := range fields {
		b.WriteString(" ")
		b.WriteString(f.key)
		b.WriteString("=")
		b.WriteString(quoteValue(f.value))
	}
	return b.String()
}

func quoteValue(v string) string {
	if v == "" || strings.IndexFunc(v, needsQuote) >= 0 {
		return strconv.Quote(v)
	}
	return v
}

func needsQuote(r rune) bool {
	return unicode.IsSpace(r) || r == '"' || r == '\\' || !unicode.IsPrint(r)
}

// parseOSRelease reads os-release(5) text: KEY=VALUE lines, values optionally in
// single or double quotes, backslash escapes inside double quotes, # comments.
func parseOSRelease(text string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || key == "" {
			continue
		}
		vars[key] = unquoteShell(value)
	}
	return vars
}

func unquoteShell(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v[1 : len(v)-1]
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			if v[i] == '\\' && i+1 < len(v) {
				i++
			}
			b.WriteByte(v[i])
		}
		return b.String()
	}
	return v
}
