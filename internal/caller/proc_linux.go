package caller

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// maxFDScan bounds the open files findProcess looks at for one connection
// (one readlink each: 2 to 7 µs measured, see BenchmarkProcessScan): a
// caller whose uid holds more files than this across its processes may get
// no pid rather than a slow answer. 10,000 files is a few hundred ordinary
// processes, and 20 to 70 ms.
const maxFDScan = 10_000

// process is what /proc says about the process holding a peer's socket.
type process struct {
	pid, gid int
	exe      string
}

// findProcess finds a process running as uid that holds the socket with the
// given inode, scanning /proc/<pid>/fd of those processes and stopping at the
// first match or after maxFDScan files. Processes it may not look into are
// skipped. A process holding a socket created under another uid (it changed
// its uid after connecting, or was passed the socket) is not found.
func findProcess(inode uint32, uid int) (process, bool) {
	p, _, ok := scanProcesses(inode, uid, maxFDScan)
	return p, ok
}

// lastPIDs remembers, per uid, the process most recently found holding a
// connection: a program that opens one connection after another (a pool, a
// client without keep-alive) is looked at first, before the scan.
var lastPIDs = struct {
	sync.Mutex
	m map[int]string
}{m: make(map[int]string)}

// scanProcesses is findProcess with a budget of links to read; it also
// says how many it read. It looks at the last process found for uid first,
// then at the others newest first (highest pid first, which is newest
// until pids wrap around): a client that starts, connects and exits is
// young, and a long-lived one keeps its connections open, so it is
// searched for once per connection, not per request.
func scanProcesses(inode uint32, uid, budget int) (p process, read int, ok bool) {
	limit := budget
	defer func() { read = limit - budget }()
	target := []byte("socket:[" + strconv.FormatUint(uint64(inode), 10) + "]")
	// A link one byte longer than the target is long enough to tell it apart.
	link := make([]byte, len(target)+1)
	// try scans the files of process name, if it runs as uid.
	try := func(name string) (process, bool, bool) {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			return process{}, false, false // not a process: /proc/self, /proc/net, ...
		}
		// /proc/<pid> belongs to the process's effective uid (to root
		// when it is not dumpable): a cheap filter before its files.
		var st unix.Stat_t
		if unix.Stat("/proc/"+name, &st) != nil || int(st.Uid) != uid {
			return process{}, false, false
		}
		fd, found := holds(name, target, link, &budget)
		if !found {
			return process{}, false, budget <= 0
		}
		p, ok := describe(pid, uid, fd, target, link)
		if ok {
			lastPIDs.Lock()
			if len(lastPIDs.m) >= maxNames {
				clear(lastPIDs.m)
			}
			lastPIDs.m[uid] = name
			lastPIDs.Unlock()
		}
		return p, ok, true
	}
	lastPIDs.Lock()
	last, hinted := lastPIDs.m[uid]
	lastPIDs.Unlock()
	if hinted {
		if p, ok, done := try(last); done {
			return p, 0, ok
		}
	}
	d, err := os.Open("/proc")
	if err != nil {
		return process{}, 0, false
	}
	pids, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return process{}, 0, false
	}
	for _, name := range slices.Backward(pids) {
		if hinted && name == last {
			continue
		}
		if p, ok, done := try(name); done {
			return p, 0, ok
		}
	}
	return process{}, 0, false
}

// holds reports which file descriptor of process pid (if any) is a link to
// target, counting each link read against budget.
func holds(pid string, target, link []byte, budget *int) (string, bool) {
	d, err := os.Open("/proc/" + pid + "/fd")
	if err != nil {
		return "", false // gone, or not ours to look into
	}
	defer d.Close()
	fds, err := d.Readdirnames(-1)
	if err != nil {
		return "", false
	}
	dirfd := int(d.Fd())
	for _, fd := range fds {
		if *budget <= 0 {
			return "", false
		}
		*budget--
		n, err := unix.Readlinkat(dirfd, fd, link)
		if err == nil && bytes.Equal(link[:n], target) {
			return fd, true
		}
	}
	return "", false
}

// describe reads the gid and executable of pid, which held the socket
// target as file descriptor fd, and checks that it still holds it
// afterwards: if so, the pid was not reused while it was read.
func describe(pid, uid int, fd string, target, link []byte) (process, bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	p := process{pid: pid, gid: -1, exe: readExe(pid)}
	if status, err := os.ReadFile(dir + "/status"); err == nil {
		// The gid goes with the uid only if the process still runs as it.
		if euid, ok := statusID(status, "Uid:"); ok && euid == uid {
			if egid, ok := statusID(status, "Gid:"); ok {
				p.gid = egid
			}
		}
	}
	n, err := unix.Readlink(dir+"/fd/"+fd, link)
	if err != nil || !bytes.Equal(link[:n], target) {
		return process{}, false
	}
	return p, true
}

// statusID reads the effective id, the second of the four numbers, from
// the line of /proc/<pid>/status that starts with key ("Uid:" or "Gid:").
func statusID(status []byte, key string) (int, bool) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) < 2 {
			return 0, false
		}
		id, err := strconv.Atoi(string(f[1]))
		return id, err == nil
	}
	return 0, false
}

// readExe is the executable of pid, or "" when it cannot be read (the
// process is gone, is a kernel thread, or is not ours to look into).
func readExe(pid int) string {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return ""
	}
	return exe
}
