package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// scanAll runs the scanner over body and returns the records kept, the
// sizes of the ones too large, and the error that ended the scan.
func scanAll(body string, max int) (recs []string, large []int, err error) {
	sc := newRecordScanner(strings.NewReader(body), max, 1<<30)
	for {
		rec, size, err := sc.next()
		if errors.Is(err, io.EOF) {
			return recs, large, nil
		}
		if err != nil {
			return recs, large, err
		}
		if rec == nil {
			large = append(large, size)
			continue
		}
		recs = append(recs, string(rec))
	}
}

func TestRecordScanner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    []string
		large   []int
		wantErr bool
	}{
		{name: "empty array", body: " [ ] \n"},
		{name: "records", body: `[{"a":1}, {"b":"x]}\"{"} ,{"c":[1,{"d":2}]}]`, want: []string{`{"a":1}`, `{"b":"x]}\"{"}`, `{"c":[1,{"d":2}]}`}},
		{name: "escaped backslash before quote", body: `[{"a":"\\"}]`, want: []string{`{"a":"\\"}`}},
		{name: "too large kept out", body: `[{"a":"0123456789"},{"b":1}]`, want: []string{`{"b":1}`}, large: []int{18}},
		{name: "empty body", body: ``, wantErr: true},
		{name: "object", body: `{"a":1}`, wantErr: true},
		{name: "number record", body: `[1]`, wantErr: true},
		{name: "bad record", body: `[{"a":}]`, wantErr: true},
		{name: "unterminated", body: `[{"a":1}`, wantErr: true},
		{name: "missing comma", body: `[{"a":1} {"b":2}]`, wantErr: true},
		{name: "trailing", body: `[] []`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			max := 1 << 20
			if tc.large != nil {
				max = 12
			}
			recs, large, err := scanAll(tc.body, max)
			if (err != nil) != tc.wantErr {
				t.Fatalf("scan(%q) error = %v, want error %v", tc.body, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if strings.Join(recs, "|") != strings.Join(tc.want, "|") {
				t.Errorf("scan(%q) = %q, want %q", tc.body, recs, tc.want)
			}
			if len(large) != len(tc.large) || len(large) > 0 && large[0] != tc.large[0] {
				t.Errorf("scan(%q) too large = %v, want %v", tc.body, large, tc.large)
			}
		})
	}
}

// FuzzRecordScanner checks that the scanner agrees with encoding/json on
// which bodies are arrays of objects, and on their records.
func FuzzRecordScanner(f *testing.F) {
	for _, s := range []string{`[]`, `[{"a":1}]`, `[{"a":"\\\""},{"b":[{}]}]`, `[{"a":1},]`, `{}`, `[{"a":"\u00e9"}]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		recs, _, err := scanAll(body, 1<<20)
		var want []json.RawMessage
		jerr := json.Unmarshal([]byte(body), &want)
		objects := jerr == nil
		for _, r := range want {
			if len(r) == 0 || r[0] != '{' {
				objects = false
			}
		}
		if objects != (err == nil) {
			t.Fatalf("scan(%q) error = %v; encoding/json says array of objects = %v (%v)", body, err, objects, jerr)
		}
		if err == nil && len(recs) != len(want) {
			t.Fatalf("scan(%q) = %d records, encoding/json %d", body, len(recs), len(want))
		}
	})
}

func TestBatcherKeepsCallsUnderTheLimit(t *testing.T) {
	t.Parallel()
	for _, max := range []int{200, 4096, 100_000} {
		t.Run(strconv.Itoa(max), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			b := newBatcher(max)
			var recs []string
			var calls []*batch
			for i := range 3000 {
				n := 1 + rng.IntN(min(max-12, 600))
				rec := `{"i":"` + strings.Repeat(string(rune('a'+i%26)), n) + `"}`
				if len(rec) > max-2 {
					rec = `{}`
				}
				recs = append(recs, rec)
				if c := b.add(i, []byte(rec)); c != nil {
					calls = append(calls, c)
				}
			}
			if c := b.flush(); c != nil {
				calls = append(calls, c)
			}
			next := 0
			for _, c := range calls {
				if len(c.body) > max {
					t.Fatalf("call of %d bytes, limit %d", len(c.body), max)
				}
				data := c.body
				if c.gzip {
					zr, err := gzip.NewReader(bytes.NewReader(c.body))
					if err != nil {
						t.Fatal(err)
					}
					if data, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				var got []json.RawMessage
				if err := json.Unmarshal(data, &got); err != nil {
					t.Fatalf("call %d..%d is not a JSON array: %v", c.first, c.last, err)
				}
				if c.first != next || c.last != next+len(got)-1 {
					t.Fatalf("call says %d..%d, holds %d records from %d", c.first, c.last, len(got), next)
				}
				for k, r := range got {
					if string(r) != recs[next+k] {
						t.Fatalf("record %d changed", next+k)
					}
				}
				next += len(got)
			}
			if next != len(recs) {
				t.Errorf("calls hold %d records, want %d", next, len(recs))
			}
		})
	}
}
