// Package yamlfile decodes the broker's YAML files (BROKER_CONFIG,
// BROKER_ROUTES_FILE) strictly and says what is wrong with them line by
// line, in words instead of Go type names.
package yamlfile

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a file.
type Problem struct {
	// Line is the line it is on; 0 means the whole file.
	Line int
	// What says what is wrong.
	What string
}

// Words turn the decoder's messages into the file's own vocabulary.
type Words struct {
	// Unknown describes a key the Go type typ (such as "identityEntry") has
	// no field for.
	Unknown func(key, typ string) string
	// Types replaces Go type names (such as "[]config.identityEntry") with
	// words (such as "a list of identities").
	Types *strings.Replacer
}

// SyntaxError is YAML that does not parse: nothing was decoded.
type SyntaxError struct{ Problem }

func (e *SyntaxError) Error() string { return e.What }

var (
	yamlLineRe     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
	typeErrLineRe  = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownFieldRe = regexp.MustCompile(`^field (\S+) not found in type (?:\S+\.)?(\w+)$`)
)

// Decode decodes the one document of data into v, refusing unknown keys.
// It returns io.EOF when data holds no document and a *SyntaxError when it
// does not parse. Otherwise v holds what could be decoded and the problems
// are the values of the wrong type, the unknown keys (described by w) and a
// second document.
func Decode(data []byte, v any, w Words) ([]Problem, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var out []Problem
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
				n, _ := strconv.Atoi(m[1])
				return nil, &SyntaxError{Problem{n, m[2]}}
			}
			return nil, &SyntaxError{Problem{0, strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
		// A type error leaves the rest decoded: report it beside every
		// other problem.
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
			out = append(out, p)
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		out = append(out, Problem{extra.Line, "the file holds more than one YAML document: keep one"})
	}
	return out, nil
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
		if m.Content[i].Value != key {
			continue
		}
		var lines []int
		for _, item := range m.Content[i+1].Content {
			lines = append(lines, item.Line)
		}
		return lines
	}
	return nil
}
