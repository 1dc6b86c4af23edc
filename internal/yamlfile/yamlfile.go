// Package yamlfile reads the broker's YAML files (BROKER_CONFIG,
// BROKER_ROUTES_FILE) strictly and says what is wrong with them line by
// line, in the file's words instead of Go type names.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxSize bounds a file: the broker's files are a few kilobytes.
const MaxSize = 1 << 20

// ErrTooLarge is the error of Read for a file larger than MaxSize.
var ErrTooLarge = fmt.Errorf("is larger than %d bytes", MaxSize)

// Read reads the file at path, at most MaxSize bytes.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err == nil && len(data) > MaxSize {
		err = ErrTooLarge
	}
	return data, err
}

// Problem is one thing wrong with a file, on Line (0: the whole file).
type Problem struct {
	Line int
	What string
}

// Words turn the decoder's messages into the file's vocabulary: Unknown
// describes a key that the Go type typ (such as "identityEntry") has no
// field for, and Types replaces Go type names with words.
type Words struct {
	Unknown func(key, typ string) string
	Types   *strings.Replacer
}

var (
	yamlLineRe     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	typeErrLineRe  = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type (?:\S+\.)?(\w+)$`)
)

// Decode decodes the one document of data into v, refusing unknown keys.
// When data holds no document it returns ok false and no problem; when it
// does not parse, ok false and the syntax error. Otherwise v holds what
// could be decoded and the problems are the values of the wrong type, the
// unknown keys (described by w) and a second document.
func Decode(data []byte, v any, w Words) (problems []Problem, ok bool) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	switch {
	case errors.Is(err, io.EOF):
		return nil, false
	case err != nil && !errors.As(err, &te):
		if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return []Problem{{n, m[2]}}, false
		}
		return []Problem{{0, strings.TrimPrefix(err.Error(), "yaml: ")}}, false
	case te != nil:
		// A type error leaves the rest decoded: it is one problem among
		// the others.
		for _, msg := range te.Errors {
			p := Problem{What: msg}
			if m := typeErrLineRe.FindStringSubmatch(msg); m != nil {
				p.Line, _ = strconv.Atoi(m[1])
				p.What = m[2]
			}
			if m := unknownFieldRe.FindStringSubmatch(p.What); m != nil {
				p.What = w.Unknown(m[1], m[2])
			} else if w.Types != nil {
				p.What = w.Types.Replace(p.What)
			}
			problems = append(problems, p)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		problems = append(problems, Problem{extra.Line, "the file holds more than one YAML document: keep one"})
	}
	return problems, true
}

// ItemLines returns the line of each item of the top-level list key, for
// messages about items whose keys are missing.
func ItemLines(data []byte, key string) []int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			var lines []int
			for _, item := range m.Content[i+1].Content {
				lines = append(lines, item.Line)
			}
			return lines
		}
	}
	return nil
}
