package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, …
	Args string
	Line int
}

// stage is one build stage: its FROM and the instructions after it.
type stage struct {
	Image, Name string
	Body        []instruction
}

// parseDockerfile is a line parser for the subset of Dockerfile syntax the
// repository's Dockerfile uses: comments, backslash continuations and one
// instruction per logical line (no heredocs).
func parseDockerfile(text string) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		logical := strings.TrimSpace(cur.String())
		cur.Reset()
		if logical == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(logical, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			s := stage{Image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.Name = f[2]
			} else if len(f) != 1 {
				return fmt.Errorf("line %d: FROM %q: want image [AS name]", in.Line, in.Args)
			}
			stages = append(stages, s)
			return nil
		}
		if len(stages) == 0 {
			if in.Cmd == "ARG" {
				return nil // a global ARG before the first FROM
			}
			return fmt.Errorf("line %d: %s before the first FROM", in.Line, in.Cmd)
		}
		stages[len(stages)-1].Body = append(stages[len(stages)-1].Body, in)
		return nil
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue // comments, also inside a continued instruction
		}
		if cur.Len() == 0 {
			if trimmed == "" {
				continue
			}
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at end of file", start)
	}
	return stages, sc.Err()
}

// find returns the stage's instructions with the given command.
func (s stage) find(cmd string) []instruction {
	var out []instruction
	for _, in := range s.Body {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// shellWords splits a command line into words the way sh does for the
// quoting the build commands use: single and double quotes, no escapes inside
// single quotes, backslash escapes inside double quotes and bare words.
func shellWords(s string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", s)
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated \" in %q", s)
			}
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// versionRef matches the ways a Makefile or Dockerfile refers to VERSION.
var versionRef = regexp.MustCompile(`\$\(VERSION\)|\$\{VERSION\}|\$VERSION\b`)

// goBuild is a normalized `go build` command line.
type goBuild struct {
	Words  []string // the command without its -o argument; VERSION as $VERSION
	Output string   // the -o argument
}

// parseGoBuild finds the `go build` command in a shell line (which may chain
// commands with && or ;) and normalizes it.
func parseGoBuild(line string) (goBuild, error) {
	line = versionRef.ReplaceAllString(line, "$$VERSION")
	for _, part := range regexp.MustCompile(`&&|;|\|\|`).Split(line, -1) {
		words, err := shellWords(part)
		if err != nil {
			return goBuild{}, err
		}
		i := slices.Index(words, "build")
		if i < 1 || words[i-1] != "go" {
			continue
		}
		var b goBuild
		for j := 0; j < len(words); j++ {
			if words[j] == "-o" && j+1 < len(words) {
				b.Output = words[j+1]
				j++
				continue
			}
			b.Words = append(b.Words, words[j])
		}
		return b, nil
	}
	return goBuild{}, fmt.Errorf("no go build command in %q", line)
}

// makeVar matches a Makefile variable assignment.
var makeVar = regexp.MustCompile(`^(?:export\s+|override\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:\?=|:=|::=|\+=|=)\s*(.*)$`)

// makeRule matches a rule line: targets, a single colon, prerequisites.
var makeRule = regexp.MustCompile(`^([^\s:=#][^:=]*?)\s*:(?:[^=]|$)\s*(.*)$`)

// makefile is the part of a Makefile the build check needs.
type makefile struct {
	vars    map[string]string
	prereqs map[string][]string
	recipes map[string][]string
}

// parseMakefile reads variables, rules and recipes; recipe lines are the
// tab-indented lines after a rule, continuation lines joined.
func parseMakefile(text string) makefile {
	mk := makefile{vars: map[string]string{}, prereqs: map[string][]string{}, recipes: map[string][]string{}}
	var lines []string
	var cur strings.Builder
	for l := range strings.SplitSeq(text, "\n") {
		if body, ok := strings.CutSuffix(l, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	var targets []string
	for _, l := range lines {
		if strings.HasPrefix(l, "\t") {
			for _, t := range targets {
				mk.recipes[t] = append(mk.recipes[t], strings.TrimSpace(l))
			}
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
			continue
		}
		if m := makeVar.FindStringSubmatch(l); m != nil {
			mk.vars[m[1]] = m[2]
			targets = nil
			continue
		}
		if m := makeRule.FindStringSubmatch(l); m != nil {
			targets = strings.Fields(m[1])
			deps, _, _ := strings.Cut(m[2], "##")
			deps, _, _ = strings.Cut(deps, ";")
			for _, t := range targets {
				mk.prereqs[t] = append(mk.prereqs[t], strings.Fields(deps)...)
			}
			continue
		}
		targets = nil
	}
	return mk
}

// expand replaces $(NAME) and ${NAME} with the variable's value, recursively,
// leaves VERSION and $(shell …) alone, and turns $$ into $.
func (mk makefile) expand(s string, depth int) string {
	ref := regexp.MustCompile(`\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]`)
	out := ref.ReplaceAllStringFunc(s, func(m string) string {
		name := ref.FindStringSubmatch(m)[1]
		v, ok := mk.vars[name]
		if name == "VERSION" || !ok || depth > 10 {
			return m
		}
		return mk.expand(v, depth+1)
	})
	if depth == 0 {
		out = strings.ReplaceAll(out, "$$", "$")
	}
	return out
}

// buildCommand returns the expanded recipe line of target (or of one of its
// prerequisites) that runs go build.
func (mk makefile) buildCommand(target string, seen map[string]bool) (string, bool) {
	if seen[target] {
		return "", false
	}
	seen[target] = true
	for _, l := range mk.recipes[target] {
		l = strings.TrimLeft(l, "@-+")
		if e := mk.expand(l, 0); regexp.MustCompile(`\bgo\s+build\b`).MatchString(e) {
			return e, true
		}
	}
	for _, dep := range mk.prereqs[target] {
		if l, ok := mk.buildCommand(dep, seen); ok {
			return l, true
		}
	}
	return "", false
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	stages, err := parseDockerfile(readFile(t, filepath.Join(repoRoot, "Dockerfile")))
	if err != nil {
		t.Fatalf("parse Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a final stage", len(stages))
	}
	build, final := stages[0], stages[len(stages)-1]

	t.Run("base images", func(t *testing.T) {
		if !strings.HasPrefix(build.Image, "golang:1.26") {
			t.Errorf("build stage FROM %s, want golang:1.26", build.Image)
		}
		if want := "gcr.io/distroless/static-debian12:nonroot"; final.Image != want {
			t.Errorf("final stage FROM %s, want %s", final.Image, want)
		}
	})

	t.Run("non-root user", func(t *testing.T) {
		users := final.find("USER")
		if len(users) == 0 {
			t.Fatal("final stage has no USER, want USER 65532:65532")
		}
		if got := users[len(users)-1].Args; got != "65532:65532" {
			t.Errorf("USER %s, want 65532:65532", got)
		}
	})

	t.Run("entrypoint and command", func(t *testing.T) {
		for _, tc := range []struct {
			cmd  string
			want []string
		}{
			{"ENTRYPOINT", []string{"/broker"}},
			{"CMD", []string{"serve"}},
		} {
			ins := final.find(tc.cmd)
			if len(ins) != 1 {
				t.Errorf("final stage has %d %s instructions, want 1", len(ins), tc.cmd)
				continue
			}
			var got []string
			if err := json.Unmarshal([]byte(ins[0].Args), &got); err != nil {
				t.Errorf("%s %s: not the exec (JSON) form: %v", tc.cmd, ins[0].Args, err)
				continue
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.cmd, diff)
			}
		}
	})

	t.Run("exposed ports", func(t *testing.T) {
		var ports []string
		for _, in := range final.find("EXPOSE") {
			ports = append(ports, strings.Fields(in.Args)...)
		}
		slices.Sort(ports)
		if diff := cmp.Diff([]string{"8400", "9400"}, ports); diff != "" {
			t.Errorf("EXPOSE (-want +got):\n%s", diff)
		}
	})

	t.Run("binary copied from the build output", func(t *testing.T) {
		b := dockerGoBuild(t, build)
		want := fmt.Sprintf("--from=%s %s /broker", build.Name, b.Output)
		var found bool
		for _, in := range final.find("COPY") {
			found = found || strings.Join(strings.Fields(in.Args), " ") == want
		}
		if !found {
			t.Errorf("final stage has no COPY %s", want)
		}
	})

	t.Run("version argument and module cache", func(t *testing.T) {
		var argLine, runLine int
		var cached bool
		for _, in := range build.Body {
			if in.Cmd == "ARG" && regexp.MustCompile(`^VERSION(=|$)`).MatchString(in.Args) {
				argLine = in.Line
			}
			if in.Cmd == "RUN" && strings.Contains(in.Args, "go build") {
				runLine = in.Line
				cached = strings.Contains(in.Args, "--mount=type=cache,target=/go/pkg/mod")
			}
		}
		if argLine == 0 || argLine > runLine {
			t.Errorf("ARG VERSION at line %d, want it in the build stage before the go build at line %d", argLine, runLine)
		}
		if !cached {
			t.Error("go build RUN has no --mount=type=cache,target=/go/pkg/mod")
		}
	})

	t.Run("build command matches the Makefile", func(t *testing.T) {
		mkText := readFile(t, filepath.Join(repoRoot, "Makefile"))
		mkLine, ok := parseMakefile(mkText).buildCommand("build", map[string]bool{})
		if !ok {
			t.Fatal("Makefile: no go build command in the recipe of target build or its prerequisites")
		}
		mk, err := parseGoBuild(mkLine)
		if err != nil {
			t.Fatalf("Makefile build recipe: %v", err)
		}
		docker := dockerGoBuild(t, build)
		if diff := cmp.Diff(mk.Words, docker.Words); diff != "" {
			t.Errorf("Dockerfile go build differs from the Makefile's (-Makefile +Dockerfile):\n%s", diff)
		}
		for _, w := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/broker"} {
			if !slices.Contains(docker.Words, w) {
				t.Errorf("Dockerfile go build %q lacks %s", docker.Words, w)
			}
		}
		wantLD := "-X github.com/entrabroker/broker/internal/version.Version=$VERSION"
		if !slices.ContainsFunc(docker.Words, func(w string) bool { return strings.Contains(w, wantLD) }) {
			t.Errorf("Dockerfile go build %q does not stamp the version with %s", docker.Words, wantLD)
		}
	})
}

// dockerGoBuild returns the normalized go build of the build stage's RUN,
// its --mount flags removed.
func dockerGoBuild(t *testing.T, s stage) goBuild {
	t.Helper()
	for _, in := range s.find("RUN") {
		if !strings.Contains(in.Args, "go build") {
			continue
		}
		args := regexp.MustCompile(`--mount=\S+\s*`).ReplaceAllString(in.Args, "")
		b, err := parseGoBuild(args)
		if err != nil {
			t.Fatalf("Dockerfile line %d: %v", in.Line, err)
		}
		return b
	}
	t.Fatal("Dockerfile build stage has no RUN with go build")
	return goBuild{}
}

func TestParseGoBuild(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line string
		want       goBuild
	}{
		{
			name: "make variable and quoted ldflags",
			line: `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X m/v.Version=$(VERSION)" -o bin/broker ./cmd/broker`,
			want: goBuild{Words: []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags", "-s -w -X m/v.Version=$VERSION", "./cmd/broker"}, Output: "bin/broker"},
		},
		{
			name: "shell variable, chained command",
			line: `mkdir -p bin && CGO_ENABLED=0 go build -ldflags '-X m/v.Version=${VERSION}' -o /out/broker ./cmd/broker`,
			want: goBuild{Words: []string{"CGO_ENABLED=0", "go", "build", "-ldflags", "-X m/v.Version=$VERSION", "./cmd/broker"}, Output: "/out/broker"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseGoBuild(tc.line)
			if err != nil {
				t.Fatalf("parseGoBuild(%q) error: %v", tc.line, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("parseGoBuild(%q) (-want +got):\n%s", tc.line, diff)
			}
		})
	}
}

func TestMakefileBuildCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text, want string
	}{
		{
			name: "recipe on the target",
			text: "VERSION ?= dev\nbuild: ## Build.\n\t@CGO_ENABLED=0 go build -o bin/broker ./cmd/broker\n",
			want: "CGO_ENABLED=0 go build -o bin/broker ./cmd/broker",
		},
		{
			name: "variables expanded, VERSION kept, recipe on a prerequisite",
			text: "GO ?= go\nLDFLAGS := -X v.Version=$(VERSION)\nbuild: bin/broker\nbin/broker: \\\n  go.mod\n\t$(GO) build -ldflags \"$(LDFLAGS)\" -o $@ ./cmd/broker\n",
			want: `go build -ldflags "-X v.Version=$(VERSION)" -o $@ ./cmd/broker`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseMakefile(tc.text).buildCommand("build", map[string]bool{})
			if !ok || got != tc.want {
				t.Errorf("buildCommand(build) = %q, %v, want %q, true", got, ok, tc.want)
			}
		})
	}
}

func TestDockerignore(t *testing.T) {
	t.Parallel()
	var patterns []string
	for _, l := range strings.Split(readFile(t, filepath.Join(repoRoot, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimSuffix(l, "/"))
		}
	}
	ignored := func(path string) bool {
		for _, p := range patterns {
			if ok, _ := filepath.Match(p, path); ok || strings.HasPrefix(path, p+"/") {
				return true
			}
		}
		return false
	}
	for _, path := range []string{"go.mod", "go.sum", "cmd/broker/main.go", "internal/version/version.go"} {
		if ignored(path) {
			t.Errorf(".dockerignore excludes %s, which the image build needs", path)
		}
	}
	for _, path := range []string{".git", "bin/broker"} {
		if !ignored(path) {
			t.Errorf(".dockerignore does not exclude %s", path)
		}
	}
}
