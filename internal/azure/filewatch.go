package azure

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"time"
)

// fileRecheck is how long what was read from a credential file is trusted
// without reading the file again even when stat says nothing changed. It
// covers file systems whose mtime is coarse and rewrites that keep size and
// inode.
const fileRecheck = time.Minute

// fileKind describes one kind of credential file, for the errors that say
// what is wrong with it.
type fileKind struct {
	what    string // "client secret file"
	setting string // "AZURE_CLIENT_SECRET_FILE"
	holds   string // "the secret's Value"
	mount   string // "the secret volume mount and its key"
	limit   int64  // the largest file accepted, in bytes
}

// watchedFile keeps what was parsed from a credential file and parses the
// file again when it changes, so a rotated credential is used on the next
// token request without a restart.
//
// Before each use the file is stat'ed, following symlinks (a Kubernetes
// secret or projected volume swaps its "..data" symlink on update), and read
// again when the resolved file's device, inode, size or modification time
// changed, when the last read is fileRecheck old by the clock, or when stale
// says the value must not be used any longer. Safe for concurrent use.
type watchedFile[T any] struct {
	path  string
	kind  fileKind
	now   func() time.Time
	parse func([]byte) (T, error) // turns the content into a value; errors are *Error
	stale func(T, time.Time) bool // nil means a value only goes stale with the file

	mu     sync.Mutex
	loaded bool
	id     fileID    // identity of the file the value came from
	readAt time.Time // when the value was read
	val    T
}

// fileID identifies one version of a file cheaply.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statID(fi fs.FileInfo) fileID {
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // field widths differ by platform.
	}
	return id
}

// load returns the value, reading and parsing the file again when it
// changed; fresh reports that it did. A failure is a permanent *Error (or
// what parse returned) and leaves the last good value in place for the next
// call to compare against, but never returns it.
func (w *watchedFile[T]) load() (v T, fresh bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fi, err := os.Stat(w.path) // Stat follows symlinks: the resolved file's identity.
	if err != nil {
		return v, false, w.fileError(err)
	}
	if !fi.Mode().IsRegular() {
		return v, false, credentialError(fmt.Sprintf("%s %q is not a regular file", w.kind.what, w.path),
			fmt.Sprintf("%s must name a file holding %s (in Kubernetes, %s), not a directory.", w.kind.setting, w.kind.holds, w.kind.mount), nil)
	}
	now := w.now()
	id := statID(fi)
	if w.loaded && id == w.id && now.Sub(w.readAt) < fileRecheck && !now.Before(w.readAt) &&
		(w.stale == nil || !w.stale(w.val, now)) {
		return w.val, false, nil
	}
	f, err := os.Open(w.path)
	if err != nil {
		return v, false, w.fileError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, w.kind.limit+1))
	if err != nil {
		return v, false, w.fileError(err)
	}
	if int64(len(b)) > w.kind.limit {
		return v, false, credentialError(fmt.Sprintf("%s %q is larger than %d bytes", w.kind.what, w.path, w.kind.limit),
			fmt.Sprintf("%s must hold only %s; check that the path names the right file.", w.kind.setting, w.kind.holds), nil)
	}
	v, err = w.parse(b)
	if err != nil {
		return v, false, err
	}
	// Stat again after reading, through the open file, so the identity kept
	// is that of the content read even if the file was swapped meanwhile.
	if fi2, err := f.Stat(); err == nil {
		id = statID(fi2)
	}
	w.val, w.id, w.readAt, w.loaded = v, id, now, true
	return v, true, nil
}

// last returns the last value parsed, if any, without touching the file.
func (w *watchedFile[T]) last() (T, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.val, w.loaded
}

// fileError explains a file that cannot be read. os errors name the path and
// the reason, never the content.
func (w *watchedFile[T]) fileError(err error) *Error {
	hint := fmt.Sprintf("Check %s and that the broker's user can read the file (in Kubernetes, %s).", w.kind.setting, w.kind.mount)
	desc := fmt.Sprintf("cannot read %s %q", w.kind.what, w.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		desc = fmt.Sprintf("%s %q does not exist", w.kind.what, w.path)
		hint = "The " + w.kind.what + " does not exist. " + hint
	case errors.Is(err, fs.ErrPermission):
		desc = fmt.Sprintf("the broker may not read %s %q", w.kind.what, w.path)
		hint = "The broker may not read the " + w.kind.what + ". " + hint
	}
	return credentialError(desc, hint, err)
}
