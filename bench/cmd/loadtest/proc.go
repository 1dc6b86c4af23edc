package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// process is a server started by the load test: its output is kept for
// error messages, and its CPU time and memory are read from /proc.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	out bytes.Buffer
	// addr is the address announced on a "listening ADDR" line.
	addr chan string
}

// startProcess runs argv, pinned to cpus with taskset when cpus is not
// empty, with env added to this process's environment.
func startProcess(name, cpus string, env []string, argv ...string) (*process, error) {
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	p := &process{name: name, cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{}), addr: make(chan string, 1)}
	p.cmd.Env = append(os.Environ(), env...)
	// Its own process group, so that a stop reaches nginx's workers too.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stderr = &lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "listening "); ok {
				select {
				case p.addr <- a:
				default:
				}
			}
			p.mu.Lock()
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

type lockedWriter struct{ p *process }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.out.Len() < 1<<20 {
		w.p.out.Write(b)
	}
	return len(b), nil
}

// listenAddr waits for the process to announce its address.
func (p *process) listenAddr() (string, error) {
	select {
	case a := <-p.addr:
		return a, nil
	case <-p.done:
		return "", fmt.Errorf("%s exited:\n%s", p.name, p.output())
	case <-time.After(15 * time.Second):
		return "", fmt.Errorf("%s announced no address within 15 s", p.name)
	}
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits up to 10 s, then kills it.
func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// pids returns the measured processes: the server and, for a server that
// forks (nginx, or anything started through taskset, which execs), every
// process of its group.
func (p *process) pids() []int {
	pgid := p.cmd.Process.Pid
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err == nil && st.pgrp == pgid {
			out = append(out, pid)
		}
	}
	return out
}

// procStat is what the load test reads from /proc/<pid>/stat.
type procStat struct {
	pgrp         int
	utime, stime uint64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces: fields start
	// after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	var st procStat
	st.pgrp, _ = strconv.Atoi(f[2])
	st.utime, _ = strconv.ParseUint(f[11], 10, 64)
	st.stime, _ = strconv.ParseUint(f[12], 10, 64)
	return st, nil
}

// clockTick is USER_HZ, the unit of utime and stime: 100 on every Linux
// architecture the load test runs on.
const clockTick = 100

// cpuTime is the CPU time the process (and its group) used so far.
func (p *process) cpuTime() time.Duration {
	var ticks uint64
	for _, pid := range p.pids() {
		if st, err := readStat(pid); err == nil {
			ticks += st.utime + st.stime
		}
	}
	return time.Duration(ticks) * time.Second / clockTick
}

// rss is the resident memory of the process (and its group), from VmRSS.
func (p *process) rss() int64 {
	var total int64
	for _, pid := range p.pids() {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				total += kb << 10
			}
		}
	}
	return total
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
