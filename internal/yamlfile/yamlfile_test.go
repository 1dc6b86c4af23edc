package yamlfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type doc struct {
	Items []item `yaml:"items"`
}

type item struct {
	Name string `yaml:"name"`
	Size int    `yaml:"size"`
}

var words = Words{
	Unknown: func(key, typ string) string { return "unknown key " + key + " of " + typ },
	Types:   strings.NewReplacer("yamlfile.item", "an item"),
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, data string
		want       []Problem
		wantOK     bool
	}{
		{"good", "items:\n  - name: a\n    size: 1\n", nil, true},
		{"empty", "", nil, false},
		{"syntax", "items: [a\n", []Problem{{1, "did not find expected ',' or ']'"}}, false},
		{"unknown key and wrong type", "items:\n  - name: a\n    colour: red\n  - size: big\n",
			[]Problem{{3, "unknown key colour of item"}, {4, "cannot unmarshal !!str `big` into int"}}, true},
		{"wrong shape", "items: a\n", []Problem{{1, "cannot unmarshal !!str `a` into []an item"}}, true},
		{"two documents", "items: []\n---\nitems: []\n", []Problem{{2, "the file holds more than one YAML document: keep one"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d doc
			got, ok := Decode([]byte(tt.data), &d, words)
			if diff := cmp.Diff(tt.want, got); diff != "" || ok != tt.wantOK {
				t.Errorf("Decode(%q) ok = %v, want %v; problems (-want +got):\n%s", tt.data, ok, tt.wantOK, diff)
			}
		})
	}
}

func TestItemLines(t *testing.T) {
	t.Parallel()
	got := ItemLines([]byte("other: 1\nitems:\n  - name: a\n\n  - name: b\n"), "items")
	if diff := cmp.Diff([]int{3, 5}, got); diff != "" {
		t.Errorf("ItemLines (-want +got):\n%s", diff)
	}
}

func TestReadBounds(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, make([]byte, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(path); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Read(a file of MaxSize+1 bytes) = %v, want ErrTooLarge", err)
	}
}
