package loganalytics

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// This file holds the small KQL evaluator. It understands:
//
//	print [name=]literal, …           (unnamed columns are print_0, print_1, …)
//	Table
//	… | take N   … | limit N
//	… | project a, b, c = d
//	… | count                          (one column Count, type long)
//	… | render chartkind               (only sets the render object)
//
// Literals: long (123), real (1.5, 1e3), string ("x", 'x', @"x"), bool
// (true/false), timespan (1d, 2h, 30m, 10s, 100ms), datetime(…), guid(…),
// dynamic(…), int(…), long(…), real(…), bool(…), timespan(…), now(),
// ago(timespan). Anything else is a syntax error; an unknown table or column
// is a semantic error.

// Column types, as the service names them on the wire.
const (
	typeBool     = "bool"
	typeDatetime = "datetime"
	typeDynamic  = "dynamic"
	typeGUID     = "guid"
	typeInt      = "int"
	typeLong     = "long"
	typeReal     = "real"
	typeString   = "string"
	typeTimespan = "timespan"
)

// column is one column of a result table.
type column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// table is a result or canned table. Row values are already in their wire
// form: string, int64, int32, float64, bool or nil; datetimes, guids,
// timespans and dynamics are strings.
type table struct {
	Name    string   `json:"name"`
	Columns []column `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// queryError is a failed query: a syntax error or a semantic error. It
// becomes a 400 BadArgumentError.
type queryError struct {
	syntax  bool
	message string // SEM0100 message, or the SYN0002 message
	line    int
	pos     int
	token   string
}

func (e *queryError) Error() string { return "kql: " + e.message }

// evalResult is what a query produced.
type evalResult struct {
	table  table
	render string // chart kind from a render operator; empty when none
	// scanned is the number of rows read from the source table.
	scanned int
}

// evaluate parses and runs query against the tables in catalog. now is the
// value of now().
func evaluate(query string, catalog map[string]*table, now time.Time) (evalResult, error) {
	p, err := parse(query, now)
	if err != nil {
		if se := unknownTableError(query, catalog); se != nil {
			return evalResult{}, se
		}
		return evalResult{}, err
	}
	return p.run(catalog)
}

// unknownTableError returns the semantic error for a query that starts with
// an unknown table followed by an operator, even when the evaluator cannot
// parse that operator: the service resolves names before it runs anything,
// so "AppInsights | where x" is a SEM0100, not a syntax error.
func unknownTableError(query string, catalog map[string]*table) *queryError {
	toks, err := lex(query)
	if err != nil && len(toks) == 0 {
		// lex stops at the first bad token; re-lex token by token.
		l := &lexer{src: query, line: 1}
		for len(toks) < 3 {
			t, err := l.next()
			if err != nil || t.kind == tEOF {
				break
			}
			toks = append(toks, t)
		}
	}
	if len(toks) < 3 || toks[0].kind != tIdent || toks[0].str == "print" || isKeyword(toks[0].str) ||
		toks[1].kind != tPipe || toks[2].kind != tIdent {
		return nil
	}
	if _, ok := catalog[toks[0].str]; ok {
		return nil
	}
	return semanticError(fmt.Sprintf("'%s' operator: Failed to resolve table or column expression named '%s'", toks[2].str, toks[0].str))
}

// ---- lexer ----

type tokenKind int

const (
	tEOF tokenKind = iota
	tIdent
	tLong
	tReal
	tString
	tTimespan
	tCall // name(raw): datetime(…), guid(…), dynamic(…), int(…) …
	tPipe
	tComma
	tEq
	tLParen
	tRParen
	tSemi
	tMinus
)

type token struct {
	kind tokenKind
	text string // source text, for error messages
	str  string // value of a string, name of a call or identifier
	raw  string // raw content of a call
	num  float64
	dur  time.Duration
	line int // 1-based
	pos  int // 0-based, within the line
}

// rawCalls are the function-like literals whose parenthesised content is not
// ordinary tokens (it holds '-', ':', '{' …).
var rawCalls = map[string]bool{
	"datetime": true, "guid": true, "dynamic": true, "timespan": true, "time": true,
	"int": true, "long": true, "real": true, "double": true, "bool": true, "boolean": true,
	"now": true, "ago": true,
}

// timespanUnits maps a timespan literal suffix to its unit.
var timespanUnits = map[string]time.Duration{
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"m": time.Minute, "min": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"s": time.Second, "sec": time.Second, "second": time.Second, "seconds": time.Second,
	"ms": time.Millisecond, "milli": time.Millisecond, "millis": time.Millisecond,
	"millisecond": time.Millisecond, "milliseconds": time.Millisecond,
	"microsecond": time.Microsecond, "microseconds": time.Microsecond,
	"tick": 100 * time.Nanosecond, "ticks": 100 * time.Nanosecond,
}

type lexer struct {
	src  string
	i    int
	line int
	bol  int // offset of the beginning of the current line
}

func lex(src string) ([]token, error) {
	l := &lexer{src: src, line: 1}
	var out []token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		out = append(out, t)
		if t.kind == tEOF {
			return out, nil
		}
	}
}

func (l *lexer) errAt(start int, text string) *queryError {
	return syntaxError(text, l.line, start-l.bol)
}

func syntaxError(tok string, line, pos int) *queryError {
	return &queryError{
		syntax:  true,
		message: fmt.Sprintf("Query could not be parsed at '%s' on line [%d,%d]", tok, line, pos),
		line:    line,
		pos:     pos,
		token:   tok,
	}
}

func (l *lexer) skipSpace() {
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch {
		case c == '\n':
			l.i++
			l.line++
			l.bol = l.i
		case c == ' ' || c == '\t' || c == '\r':
			l.i++
		case c == '/' && l.i+1 < len(l.src) && l.src[l.i+1] == '/':
			for l.i < len(l.src) && l.src[l.i] != '\n' {
				l.i++
			}
		default:
			return
		}
	}
}

func (l *lexer) next() (token, error) {
	l.skipSpace()
	start := l.i
	mk := func(k tokenKind) token {
		return token{kind: k, text: l.src[start:l.i], line: l.line, pos: start - l.bol}
	}
	if l.i >= len(l.src) {
		t := mk(tEOF)
		t.text = "<EOF>"
		return t, nil
	}
	c := l.src[l.i]
	switch {
	case c == '|':
		l.i++
		return mk(tPipe), nil
	case c == ',':
		l.i++
		return mk(tComma), nil
	case c == '=':
		l.i++
		if l.i < len(l.src) && l.src[l.i] == '=' { // '==' is not ours
			return token{}, l.errAt(start, "==")
		}
		return mk(tEq), nil
	case c == '(':
		l.i++
		return mk(tLParen), nil
	case c == ')':
		l.i++
		return mk(tRParen), nil
	case c == ';':
		l.i++
		return mk(tSemi), nil
	case c == '-':
		l.i++
		return mk(tMinus), nil
	case c == '"' || c == '\'':
		s, err := l.quoted(c)
		if err != nil {
			return token{}, err
		}
		t := mk(tString)
		t.str = s
		return t, nil
	case c == '@' && l.i+1 < len(l.src) && (l.src[l.i+1] == '"' || l.src[l.i+1] == '\''):
		l.i++
		s, err := l.verbatim(l.src[l.i])
		if err != nil {
			return token{}, err
		}
		t := mk(tString)
		t.str = s
		return t, nil
	case c >= '0' && c <= '9':
		return l.number(start)
	case c == '_' || isLetter(c):
		for l.i < len(l.src) && (l.src[l.i] == '_' || isLetter(l.src[l.i]) || isDigit(l.src[l.i])) {
			l.i++
		}
		name := l.src[start:l.i]
		if rawCalls[name] && l.i < len(l.src) && l.src[l.i] == '(' {
			raw, err := l.parenthesised(start)
			if err != nil {
				return token{}, err
			}
			t := mk(tCall)
			t.str = name
			t.raw = raw
			return t, nil
		}
		t := mk(tIdent)
		t.str = name
		return t, nil
	}
	r, size := utf8.DecodeRuneInString(l.src[l.i:])
	if r == utf8.RuneError && size <= 1 {
		return token{}, l.errAt(start, l.src[l.i:l.i+1])
	}
	return token{}, l.errAt(start, string(r))
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// quoted reads a "…" or '…' string with backslash escapes.
func (l *lexer) quoted(q byte) (string, error) {
	start := l.i
	l.i++
	var b strings.Builder
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch {
		case c == q:
			l.i++
			return b.String(), nil
		case c == '\n':
			return "", l.errAt(start, l.src[start:l.i])
		case c == '\\':
			if l.i+1 >= len(l.src) {
				return "", l.errAt(start, l.src[start:])
			}
			e := l.src[l.i+1]
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\', '"', '\'':
				b.WriteByte(e)
			default:
				return "", l.errAt(start, l.src[start:l.i+2])
			}
			l.i += 2
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return "", l.errAt(start, l.src[start:])
}

// verbatim reads an @"…" string: no escapes, a doubled quote is one quote.
func (l *lexer) verbatim(q byte) (string, error) {
	start := l.i - 1
	l.i++
	var b strings.Builder
	for l.i < len(l.src) {
		c := l.src[l.i]
		if c == q {
			if l.i+1 < len(l.src) && l.src[l.i+1] == q {
				b.WriteByte(q)
				l.i += 2
				continue
			}
			l.i++
			return b.String(), nil
		}
		if c == '\n' {
			return "", l.errAt(start, l.src[start:l.i])
		}
		b.WriteByte(c)
		l.i++
	}
	return "", l.errAt(start, l.src[start:])
}

// number reads 12, 1.5, 1e3 or a timespan such as 2h or 1.5d.
func (l *lexer) number(start int) (token, error) {
	isReal := false
	for l.i < len(l.src) && isDigit(l.src[l.i]) {
		l.i++
	}
	if l.i+1 < len(l.src) && l.src[l.i] == '.' && isDigit(l.src[l.i+1]) {
		isReal = true
		l.i++
		for l.i < len(l.src) && isDigit(l.src[l.i]) {
			l.i++
		}
	}
	if l.i < len(l.src) && (l.src[l.i] == 'e' || l.src[l.i] == 'E') {
		j := l.i + 1
		if j < len(l.src) && (l.src[j] == '+' || l.src[j] == '-') {
			j++
		}
		if j < len(l.src) && isDigit(l.src[j]) {
			isReal = true
			for j < len(l.src) && isDigit(l.src[j]) {
				j++
			}
			l.i = j
		}
	}
	numText := l.src[start:l.i]
	// A unit suffix makes a timespan.
	us := l.i
	for l.i < len(l.src) && (isLetter(l.src[l.i]) || l.src[l.i] == '_' || isDigit(l.src[l.i])) {
		l.i++
	}
	if unitText := l.src[us:l.i]; unitText != "" {
		unit, ok := timespanUnits[unitText]
		if !ok {
			return token{}, l.errAt(start, l.src[start:l.i])
		}
		f, err := strconv.ParseFloat(numText, 64)
		if err != nil || f*float64(unit) > math.MaxInt64 {
			return token{}, l.errAt(start, l.src[start:l.i])
		}
		t := token{kind: tTimespan, text: l.src[start:l.i], line: l.line, pos: start - l.bol}
		t.dur = time.Duration(f * float64(unit))
		return t, nil
	}
	t := token{text: numText, line: l.line, pos: start - l.bol}
	if isReal {
		f, err := strconv.ParseFloat(numText, 64)
		if err != nil {
			return token{}, l.errAt(start, numText)
		}
		t.kind, t.num = tReal, f
		return t, nil
	}
	n, err := strconv.ParseInt(numText, 10, 64)
	if err != nil {
		return token{}, l.errAt(start, numText)
	}
	t.kind, t.num = tLong, float64(n)
	t.str = numText
	return t, nil
}

// parenthesised reads "(…)" after a call name, balancing brackets and
// skipping strings, and returns the content.
func (l *lexer) parenthesised(start int) (string, error) {
	open := l.i
	depth := 0
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch c {
		case '(', '[', '{':
			depth++
		case ')', ']', '}':
			depth--
			if depth == 0 {
				if c != ')' {
					return "", l.errAt(start, l.src[start:l.i+1])
				}
				l.i++
				return l.src[open+1 : l.i-1], nil
			}
		case '"', '\'':
			if _, err := l.quoted(c); err != nil {
				return "", err
			}
			continue
		case '\n':
			l.line++
			l.bol = l.i + 1
		}
		l.i++
	}
	return "", l.errAt(start, l.src[start:])
}

// ---- parser ----

// plan is a parsed query: a source and a chain of operators.
type plan struct {
	print []printColumn // set for a print source
	table string        // set for a table source
	ops   []operator
}

type printColumn struct {
	name  string
	typ   string
	value any
}

type operator struct {
	name    string // take, limit, project, count, render
	n       int64  // take/limit
	project []projection
	render  string
}

type projection struct {
	name   string // output name
	source string // input column
}

type parser struct {
	toks []token
	i    int
	now  time.Time
}

func parse(query string, now time.Time) (*plan, error) {
	toks, err := lex(query)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, now: now}
	return p.query()
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) take() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}
func (p *parser) fail(t token) error { return syntaxError(t.text, t.line, t.pos) }

func (p *parser) query() (*plan, error) {
	var pl plan
	t := p.take()
	switch {
	case t.kind == tIdent && t.str == "print":
		cols, err := p.printArgs()
		if err != nil {
			return nil, err
		}
		pl.print = cols
	case t.kind == tIdent && !isKeyword(t.str):
		pl.table = t.str
	default:
		return nil, p.fail(t)
	}
	for p.peek().kind == tPipe {
		p.take()
		op, err := p.operator()
		if err != nil {
			return nil, err
		}
		if len(pl.ops) > 0 && pl.ops[len(pl.ops)-1].name == "render" {
			return nil, p.fail(p.toks[p.i-1])
		}
		pl.ops = append(pl.ops, op)
	}
	if p.peek().kind == tSemi {
		p.take()
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.fail(t)
	}
	return &pl, nil
}

// isKeyword reports the operator names that cannot start a query.
func isKeyword(s string) bool {
	switch s {
	case "take", "limit", "project", "count", "render", "where", "summarize", "let", "extend", "by":
		return true
	}
	return false
}

func (p *parser) printArgs() ([]printColumn, error) {
	var cols []printColumn
	for {
		name := ""
		if t := p.peek(); t.kind == tIdent && p.toks[p.i+1].kind == tEq {
			name = t.str
			p.i += 2
		}
		typ, v, err := p.literal()
		if err != nil {
			return nil, err
		}
		if name == "" {
			name = "print_" + strconv.Itoa(len(cols))
		}
		cols = append(cols, printColumn{name: name, typ: typ, value: v})
		if p.peek().kind != tComma {
			return cols, nil
		}
		p.take()
	}
}

// literal parses one scalar literal and returns its column type and wire value.
func (p *parser) literal() (string, any, error) {
	t := p.take()
	neg := false
	if t.kind == tMinus {
		neg = true
		t = p.take()
		if t.kind != tLong && t.kind != tReal && t.kind != tTimespan {
			return "", nil, p.fail(t)
		}
	}
	switch t.kind {
	case tLong:
		n, _ := strconv.ParseInt(t.str, 10, 64)
		if neg {
			n = -n
		}
		return typeLong, n, nil
	case tReal:
		if neg {
			return typeReal, -t.num, nil
		}
		return typeReal, t.num, nil
	case tString:
		return typeString, t.str, nil
	case tTimespan:
		d := t.dur
		if neg {
			d = -d
		}
		return typeTimespan, formatTimespan(d), nil
	case tIdent:
		switch t.str {
		case "true":
			return typeBool, true, nil
		case "false":
			return typeBool, false, nil
		}
	case tCall:
		return p.call(t)
	}
	return "", nil, p.fail(t)
}

// call evaluates a function-like literal.
func (p *parser) call(t token) (string, any, error) {
	raw := strings.TrimSpace(t.raw)
	bad := func() (string, any, error) { return "", nil, p.fail(t) }
	unquote := func(s string) string {
		if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
			return s[1 : len(s)-1]
		}
		return s
	}
	switch t.str {
	case "now":
		if raw != "" {
			return bad()
		}
		return typeDatetime, formatDatetime(p.now), nil
	case "ago":
		toks, err := lex(raw)
		if err != nil || len(toks) != 2 || toks[0].kind != tTimespan {
			return bad()
		}
		return typeDatetime, formatDatetime(p.now.Add(-toks[0].dur)), nil
	case "datetime":
		if raw == "null" {
			return typeDatetime, nil, nil
		}
		tm, ok := parseDatetime(unquote(raw))
		if !ok {
			return bad()
		}
		return typeDatetime, formatDatetime(tm), nil
	case "guid":
		if raw == "null" {
			return typeGUID, nil, nil
		}
		g := strings.ToLower(unquote(raw))
		if !isGUID(g) {
			return bad()
		}
		return typeGUID, g, nil
	case "dynamic":
		if raw == "null" {
			return typeDynamic, nil, nil
		}
		var v any
		if err := json.Unmarshal([]byte(raw), &v); err != nil {
			return bad()
		}
		b, err := json.Marshal(v)
		if err != nil {
			return bad()
		}
		return typeDynamic, string(b), nil
	case "timespan", "time":
		if raw == "null" {
			return typeTimespan, nil, nil
		}
		toks, err := lex(raw)
		if err != nil || len(toks) != 2 {
			return bad()
		}
		switch toks[0].kind {
		case tTimespan:
			return typeTimespan, formatTimespan(toks[0].dur), nil
		case tLong: // a bare number of days
			return typeTimespan, formatTimespan(time.Duration(toks[0].num) * 24 * time.Hour), nil
		}
		return bad()
	case "int", "long":
		typ := typeLong
		if t.str == "int" {
			typ = typeInt
		}
		if raw == "null" {
			return typ, nil, nil
		}
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return bad()
		}
		if typ == typeInt {
			if n < math.MinInt32 || n > math.MaxInt32 {
				return bad()
			}
			return typ, int32(n), nil
		}
		return typ, n, nil
	case "real", "double":
		if raw == "null" {
			return typeReal, nil, nil
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return bad()
		}
		return typeReal, f, nil
	case "bool", "boolean":
		switch raw {
		case "null":
			return typeBool, nil, nil
		case "true", "1":
			return typeBool, true, nil
		case "false", "0":
			return typeBool, false, nil
		}
	}
	return bad()
}

func (p *parser) operator() (operator, error) {
	t := p.take()
	if t.kind != tIdent {
		return operator{}, p.fail(t)
	}
	switch t.str {
	case "take", "limit":
		n := p.take()
		if n.kind != tLong {
			return operator{}, p.fail(n)
		}
		v, err := strconv.ParseInt(n.str, 10, 64)
		if err != nil {
			return operator{}, p.fail(n)
		}
		return operator{name: t.str, n: v}, nil
	case "count":
		return operator{name: "count"}, nil
	case "render":
		k := p.take()
		if k.kind != tIdent {
			return operator{}, p.fail(k)
		}
		return operator{name: "render", render: k.str}, nil
	case "project":
		op := operator{name: "project"}
		for {
			c := p.take()
			if c.kind != tIdent || isKeyword(c.str) {
				return operator{}, p.fail(c)
			}
			pr := projection{name: c.str, source: c.str}
			if p.peek().kind == tEq {
				p.take()
				s := p.take()
				if s.kind != tIdent {
					return operator{}, p.fail(s)
				}
				pr.source = s.str
			}
			op.project = append(op.project, pr)
			if p.peek().kind != tComma {
				return op, nil
			}
			p.take()
		}
	}
	return operator{}, p.fail(t)
}

// ---- evaluation ----

func semanticError(msg string) *queryError { return &queryError{message: msg} }

func (pl *plan) run(catalog map[string]*table) (evalResult, error) {
	var res evalResult
	cur := table{Name: "PrimaryResult"}
	if pl.print != nil {
		row := make([]any, len(pl.print))
		for i, c := range pl.print {
			cur.Columns = append(cur.Columns, column{Name: c.name, Type: c.typ})
			row[i] = c.value
		}
		cur.Rows = [][]any{row}
	} else {
		src, ok := catalog[pl.table]
		if !ok {
			msg := fmt.Sprintf("Failed to resolve table or column expression named '%s'", pl.table)
			if len(pl.ops) > 0 {
				msg = fmt.Sprintf("'%s' operator: %s", pl.ops[0].name, msg)
			}
			return evalResult{}, semanticError(msg)
		}
		cur.Columns = append([]column(nil), src.Columns...)
		cur.Rows = src.Rows // never modified in place below
		res.scanned = len(src.Rows)
	}
	for _, op := range pl.ops {
		switch op.name {
		case "take", "limit":
			if int64(len(cur.Rows)) > op.n {
				cur.Rows = cur.Rows[:op.n]
			}
		case "count":
			cur = table{
				Name:    "PrimaryResult",
				Columns: []column{{Name: "Count", Type: typeLong}},
				Rows:    [][]any{{int64(len(cur.Rows))}},
			}
		case "project":
			idx := make([]int, len(op.project))
			cols := make([]column, len(op.project))
			for i, pr := range op.project {
				j := columnIndex(cur.Columns, pr.source)
				if j < 0 {
					return evalResult{}, semanticError(fmt.Sprintf("'project' operator: Failed to resolve scalar expression named '%s'", pr.source))
				}
				idx[i] = j
				cols[i] = column{Name: pr.name, Type: cur.Columns[j].Type}
			}
			rows := make([][]any, len(cur.Rows))
			for r, row := range cur.Rows {
				out := make([]any, len(idx))
				for i, j := range idx {
					out[i] = row[j]
				}
				rows[r] = out
			}
			cur.Columns, cur.Rows = cols, rows
		case "render":
			res.render = op.render
		}
	}
	if cur.Rows == nil {
		cur.Rows = [][]any{}
	}
	res.table = cur
	return res, nil
}

func columnIndex(cols []column, name string) int {
	for i, c := range cols {
		if c.Name == name {
			return i
		}
	}
	return -1
}

// ---- values ----

// formatDatetime formats t as the service does: UTC, RFC 3339, fractional
// seconds without trailing zeros.
func formatDatetime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// parseDatetime accepts the common KQL datetime literal forms.
func parseDatetime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04",
		"2006-01-02 15:04",
		"2006-01-02",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// formatTimespan formats d as KQL does: [-][d.]hh:mm:ss[.fffffff].
func formatTimespan(d time.Duration) string {
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	s := d / time.Second
	d -= s * time.Second
	if days > 0 {
		fmt.Fprintf(&b, "%d.", days)
	}
	fmt.Fprintf(&b, "%02d:%02d:%02d", h, m, s)
	if ticks := d / 100; ticks > 0 {
		fmt.Fprintf(&b, ".%07d", ticks)
	}
	return b.String()
}

// isGUID reports whether s has the 8-4-4-4-12 hex form.
func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !unicode.Is(unicode.ASCII_Hex_Digit, r) {
				return false
			}
		}
	}
	return true
}
