package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// recordScanner reads a JSON array one element at a time, without holding
// more than one element: the bytes of an element up to a bound are kept, a
// larger one is only measured. It checks the array's structure itself and
// each kept element with encoding/json.
type recordScanner struct {
	r       *bufio.Reader
	max     int   // largest element kept
	n       int64 // bytes read so far
	limit   int64 // bytes allowed in all
	started bool
	done    bool
	buf     []byte
}

// errTooMuchInput is returned past the scanner's byte limit.
var errTooMuchInput = errors.New("proxy: upload larger than the limit")

// syntaxError is a body that is not a JSON array of objects.
type syntaxError struct {
	offset int64
	msg    string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("byte %d: %s", e.offset, e.msg) }

func newRecordScanner(r io.Reader, max int, limit int64) *recordScanner {
	return &recordScanner{r: bufio.NewReaderSize(r, 64<<10), max: max, limit: limit}
}

func (s *recordScanner) readByte() (byte, error) {
	c, err := s.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	s.n++
	if s.n > s.limit {
		return 0, errTooMuchInput
	}
	return c, nil
}

// skipSpace returns the next byte that is not JSON white space.
func (s *recordScanner) skipSpace() (byte, error) {
	for {
		c, err := s.readByte()
		if err != nil {
			return 0, err
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (s *recordScanner) fail(msg string) error { return &syntaxError{offset: s.n, msg: msg} }

// next returns the next element: its bytes (nil when it is larger than max,
// then size says how large) or io.EOF after the closing bracket. The bytes
// are valid until the next call. A body that is not a JSON array of objects
// is a *syntaxError.
func (s *recordScanner) next() (rec []byte, size int, err error) {
	if s.done {
		return nil, 0, io.EOF
	}
	c, err := s.skipSpace()
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && !s.started {
			return nil, 0, s.fail("the body is empty; send a JSON array of records")
		}
		return nil, 0, s.wrap(err)
	}
	if !s.started {
		if c != '[' {
			return nil, 0, s.fail("the body is not a JSON array; send [ {record}, … ]")
		}
		s.started = true
		if c, err = s.skipSpace(); err != nil {
			return nil, 0, s.wrap(err)
		}
		if c == ']' {
			return nil, 0, s.end()
		}
	} else {
		switch c {
		case ']':
			return nil, 0, s.end()
		case ',':
			if c, err = s.skipSpace(); err != nil {
				return nil, 0, s.wrap(err)
			}
		default:
			return nil, 0, s.fail("expected , or ] after a record")
		}
	}
	if c != '{' {
		return nil, 0, s.fail("a record is not a JSON object")
	}
	s.buf = append(s.buf[:0], c)
	size = 1
	depth := 1
	inString := false
	for depth > 0 {
		// Scan what the reader holds with bytes.IndexAny, which skips
		// ordinary bytes far faster than a loop over each.
		chunk, err := s.r.Peek(max(s.r.Buffered(), 1))
		if errors.Is(err, io.EOF) {
			return nil, 0, s.fail("the body ends inside a record")
		}
		if err != nil {
			return nil, 0, err
		}
		i, escapeAtEnd := 0, false
	scan:
		for i < len(chunk) && depth > 0 {
			var j int
			if inString {
				j = bytes.IndexAny(chunk[i:], "\"\\")
			} else {
				j = bytes.IndexAny(chunk[i:], "\"{}[]")
			}
			if j < 0 {
				i = len(chunk)
				break
			}
			i += j
			switch c := chunk[i]; {
			case inString && c == '\\':
				if i+1 == len(chunk) {
					escapeAtEnd = true
					break scan
				}
				i += 2
				continue
			case c == '"':
				inString = !inString
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				depth--
			}
			i++
		}
		if escapeAtEnd && i == 0 {
			// The buffer holds just a backslash: take the byte it escapes too.
			if chunk, err = s.r.Peek(2); errors.Is(err, io.EOF) {
				return nil, 0, s.fail("the body ends inside a record")
			} else if err != nil {
				return nil, 0, err
			}
			i = 2
		}
		if err := s.take(chunk[:i], &size); err != nil {
			return nil, 0, err
		}
	}
	if size > s.max {
		return nil, size, nil
	}
	if !json.Valid(s.buf) {
		return nil, 0, s.fail("a record is not valid JSON")
	}
	return s.buf, size, nil
}

// take consumes p, the next bytes of the current record, keeping them while
// the record is within the bound.
func (s *recordScanner) take(p []byte, size *int) error {
	s.n += int64(len(p))
	if s.n > s.limit {
		return errTooMuchInput
	}
	if *size+len(p) <= s.max {
		s.buf = append(s.buf, p...)
	} else if *size <= s.max {
		s.buf = s.buf[:0]
	}
	*size += len(p)
	_, _ = s.r.Discard(len(p))
	return nil
}

// end checks that nothing but white space follows the closing bracket.
func (s *recordScanner) end() error {
	s.done = true
	for {
		c, err := s.readByte()
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return io.EOF
		}
		if err != nil {
			return s.wrap(err)
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return s.fail("something follows the array's closing bracket")
	}
}

// wrap turns the end of the input inside the array into a syntax error.
func (s *recordScanner) wrap(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return s.fail("the body ends inside the array")
	}
	return err
}

// batch is one upstream call's records: a JSON array, gzip'd or not.
type batch struct {
	first, last int // record indexes, inclusive; last < first for "[]"
	body        []byte
	gzip        bool
}

// gzipWriters recycle gzip writers; a fresh one costs hundreds of kilobytes.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// batcher packs records into calls of at most max bytes as sent: plain JSON
// while the records fit, then gzip'd when more would fit compressed. It holds
// one call's bytes (plain and compressed) at a time.
type batcher struct {
	max   int
	raw   []byte // "[rec,rec" while plain
	gz    *gzip.Writer
	gzBuf *bytes.Buffer
	// pending is what was written to gz since its last flush, which its
	// output may not show yet.
	pending     int
	first, next int // record indexes: first of the call, next to add
	count       int // records in the call
}

// newBatcher returns a batcher of calls of at most max bytes. Its buffer
// grows with the records, so a small upload takes little memory.
func newBatcher(max int) *batcher {
	return &batcher{max: max}
}

// worstGzip bounds the compressed size of n more bytes: deflate never
// stores more than the data plus block headers; the margin covers the
// flush marker, the final block and the gzip trailer.
func worstGzip(n int) int { return n + n/64 + 64 }

// add puts record i into the current call and returns a finished call when
// rec did not fit into the current one (rec then starts the next), or nil.
// rec must be at most max-2 bytes.
func (b *batcher) add(i int, rec []byte) *batch {
	if b.count == 0 {
		b.first = i
	}
	if b.gz == nil {
		if len(b.raw)+len(rec)+2 <= b.max { // "," or "[" before, "]" after
			b.appendRaw(rec)
			b.count++
			b.next = i + 1
			return nil
		}
		if b.count == 0 {
			b.appendRaw(rec) // cannot happen for rec ≤ max-2
			b.count++
			return nil
		}
		b.startGzip()
	}
	if b.fitsGzip(len(rec) + 1) {
		_, _ = b.gz.Write([]byte{','})
		_, _ = b.gz.Write(rec)
		b.pending += len(rec) + 1
		b.count++
		b.next = i + 1
		return nil
	}
	out := b.flush()
	b.first = i
	b.appendRaw(rec)
	b.count = 1
	b.next = i + 1
	return out
}

func (b *batcher) appendRaw(rec []byte) {
	if len(b.raw) == 0 {
		b.raw = append(b.raw, '[')
	} else {
		b.raw = append(b.raw, ',')
	}
	b.raw = append(b.raw, rec...)
}

// startGzip moves the plain records into a gzip stream.
func (b *batcher) startGzip() {
	b.gzBuf = bytes.NewBuffer(make([]byte, 0, b.max))
	b.gz = gzipWriters.Get().(*gzip.Writer)
	b.gz.Reset(b.gzBuf)
	_, _ = b.gz.Write(b.raw)
	b.pending = len(b.raw)
	b.raw = b.raw[:0]
}

// fitsGzip reports whether n more bytes surely fit the compressed call,
// flushing the compressor to learn its exact size when the estimate says no.
func (b *batcher) fitsGzip(n int) bool {
	if b.gzBuf.Len()+worstGzip(b.pending+n+1) <= b.max {
		return true
	}
	if b.pending == 0 {
		return false
	}
	_ = b.gz.Flush()
	b.pending = 0
	return b.gzBuf.Len()+worstGzip(n+1) <= b.max
}

// flush ends the current call and returns it; nil when it holds no record.
func (b *batcher) flush() *batch {
	if b.count == 0 {
		return nil
	}
	out := &batch{first: b.first, last: b.next - 1}
	if b.gz != nil {
		_, _ = b.gz.Write([]byte{']'})
		_ = b.gz.Close()
		gzipWriters.Put(b.gz)
		b.gz = nil
		out.body, out.gzip = b.gzBuf.Bytes(), true
		b.gzBuf = nil
	} else {
		b.raw = append(b.raw, ']')
		out.body = b.raw
		b.raw = nil
	}
	b.count = 0
	b.pending = 0
	return out
}

// release gives back the compressor of an abandoned call.
func (b *batcher) release() {
	if b.gz != nil {
		_ = b.gz.Close()
		gzipWriters.Put(b.gz)
		b.gz = nil
	}
}
