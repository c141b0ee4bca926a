package main

import (
	"errors"
	"testing"
)

func TestParseSecureBoot(t *testing.T) {
	attrs := []byte{0x06, 0, 0, 0}
	for _, c := range []struct {
		data []byte
		err  error
		want string
	}{
		{append(attrs, 1), nil, "1"},
		{append(attrs, 0), nil, "0"},
		{attrs, nil, "0"},
		{nil, errors.New("no such variable"), "0"},
	} {
		if got := parseSecureBoot(c.data, c.err); got != c.want {
			t.Errorf("parseSecureBoot(%v, %v) = %q, want %q", c.data, c.err, got, c.want)
		}
	}
}
