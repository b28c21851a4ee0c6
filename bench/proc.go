package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procStatusKB reads a "<field>: <n> kB" line of /proc/<pid>/status.
func procStatusKB(pid int, field string) (int64, error) {
	return procStatusKBFile(fmt.Sprintf("/proc/%d/status", pid), field)
}

// rssParts splits the current RSS: anonymous memory (the Go heap, stacks)
// and file-backed pages (mapped files, such as Badger's memory-mapped
// tables and value log, which the kernel can reclaim), in bytes.
func rssParts(pid int) (anon, file int64) {
	anon, _ = procStatusKB(pid, "RssAnon")
	file, _ = procStatusKB(pid, "RssFile")
	return anon << 10, file << 10
}

// rssSampler reads VmRSS every interval until done, keeping the largest.
type rssSampler struct {
	pid int
	mu  sync.Mutex
	max int64 // KiB
	cur int64 // KiB
	hwm int64 // KiB, the last VmHWM read
}

func startRSSSampler(pid int, every time.Duration, done <-chan struct{}) *rssSampler {
	s := &rssSampler{pid: pid}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, err := procStatusKB(s.pid, "VmRSS")
	if err != nil {
		return
	}
	hwm, _ := procStatusKB(s.pid, "VmHWM")
	s.mu.Lock()
	s.cur = rss
	s.max = max(s.max, rss)
	if hwm > 0 {
		s.hwm = hwm
	}
	s.mu.Unlock()
}

// now samples once more and returns the current RSS, the largest sampled
// and VmHWM, in bytes.
func (s *rssSampler) now() (cur, sampledMax, hwm int64) {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur << 10, s.max << 10, s.hwm << 10
}

// diskUsage is what du counts (allocated blocks) and the apparent size of
// every file under dir. A file that compaction deletes during the walk is
// not counted, as du would not.
func diskUsage(dir string) (allocated, apparent int64, err error) {
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && path != dir {
			return nil
		}
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			allocated += st.Blocks * 512
		}
		if info.Mode().IsRegular() {
			apparent += info.Size()
		}
		return nil
	})
	return allocated, apparent, err
}

// machineInfo names the machine in the report header.
type machineInfo struct {
	nproc   int
	arch    string // uname -m
	kernel  string // uname -r
	cpu     string
	memGiB  float64
	goVer   string
	caddy   string
	commit  string
	dirty   int
	modRoot string
	load    string // /proc/loadavg when the run started
}

func readMachine(ctx context.Context, root string) machineInfo {
	m := machineInfo{nproc: runtime.NumCPU(), goVer: runtime.Version(), modRoot: root}
	m.arch = cmdOutput(ctx, "", "uname", "-m")
	m.kernel = cmdOutput(ctx, "", "uname", "-r")
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	m.load = loadAvg()
	if kb, err := procStatusKBFile("/proc/meminfo", "MemTotal"); err == nil {
		m.memGiB = float64(kb) / (1 << 20)
	}
	if v := cmdOutput(ctx, root, "go", "env", "GOVERSION"); v != "" {
		m.goVer = v
	}
	m.commit = cmdOutput(ctx, root, "git", "rev-parse", "--short", "HEAD")
	if st := cmdOutput(ctx, root, "git", "status", "--porcelain"); st != "" {
		m.dirty = len(strings.Split(st, "\n"))
	}
	return m
}

func procStatusKBFile(path, field string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

func cmdOutput(ctx context.Context, dir, name string, args ...string) string {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// cpuSample is the machine's CPU time and the share of it Caddy and this
// process used, in clock ticks, at one moment.
type cpuSample struct {
	proc, irq, steal, total int64 // all CPUs, from /proc/stat
	caddy, self             int64 // utime+stime of each process, all threads
}

func readCPU(caddyPid int) cpuSample {
	var s cpuSample
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		if len(f) >= 9 && f[0] == "cpu" {
			v := make([]int64, 8)
			for i := range v {
				v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
			}
			// user nice system idle iowait irq softirq steal
			s.proc, s.irq, s.steal = v[0]+v[1]+v[2], v[5]+v[6], v[7]
			s.total = s.proc + s.irq + s.steal + v[3] + v[4]
		}
	}
	s.self = procCPU("/proc/self/stat")
	if caddyPid > 0 {
		s.caddy = procCPU(fmt.Sprintf("/proc/%d/stat", caddyPid))
	}
	return s
}

// procCPU is utime+stime of /proc/<pid>/stat, in clock ticks.
func procCPU(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	// After the command: state is field 3 of the line, utime 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

// cpuUse is how many CPUs' worth Caddy, this benchmark, every other process
// or kernel thread, interrupt handling (loopback networking runs there) and
// the hypervisor (steal) took between two samples.
type cpuUse struct{ caddy, bench, other, irq, steal float64 }

func cpuBetween(a, b cpuSample, ncpu int) cpuUse {
	total := float64(b.total - a.total)
	if total <= 0 {
		return cpuUse{}
	}
	cores := func(ticks int64) float64 { return max(float64(ticks), 0) / total * float64(ncpu) }
	caddy, self := b.caddy-a.caddy, b.self-a.self
	return cpuUse{caddy: cores(caddy), bench: cores(self), other: cores(b.proc - a.proc - caddy - self),
		irq: cores(b.irq - a.irq), steal: cores(b.steal - a.steal)}
}
