//go:build fault

// Package fault is paybridge's fault suite: it runs the real Caddy binary
// (built once from ./cmd/caddy) as a subprocess and hurts it, with kill -9,
// a PSP outage, a listener outage, concurrent partial operations and config
// reloads, then checks what was acknowledged against the store (admin API),
// the callbacks received and the sandbox ledger. See README.md.
package fault

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// caddyBin is the Caddy binary built by TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "fault: %v\n", err)
		fmt.Println("0 passed, 1 failed")
		return 1
	}
	tmp, err := os.MkdirTemp("", "paybridge-fault-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "fault: %v\n", err)
		fmt.Println("0 passed, 1 failed")
		return 1
	}
	defer os.RemoveAll(tmp)
	caddyBin = filepath.Join(tmp, "caddy")
	start := time.Now()
	build := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "fault: building Caddy: %v\n", err)
		fmt.Println("0 passed, 1 failed")
		return 1
	}
	fmt.Printf("fault: built %s from %s in %s\n", caddyBin, root, time.Since(start).Round(time.Millisecond))

	code := m.Run()

	passed, failed, lines := results.summary()
	for _, l := range lines {
		fmt.Println(l)
	}
	if code != 0 && failed == 0 {
		// Something failed outside a scenario (TestMain's own checks, a
		// panic): the run is not a pass.
		failed++
	}
	// The last line: CI readers take the closing line.
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	return code
}

// moduleRoot is the directory of the go.mod `go env GOMOD` names.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module (go env GOMOD = %q)", gomod)
	}
	return filepath.Dir(gomod), nil
}

// results collects each scenario's outcome and figures.
var results = &registry{}

type registry struct {
	mu        sync.Mutex
	scenarios []*figures
}

// figures are one scenario's numbers, printed at the end of the run.
type figures struct {
	name   string
	failed bool
	start  time.Time
	took   time.Duration
	mu     sync.Mutex
	keys   []string
	values map[string]string
}

// scenario registers t as a scenario; its pass or failure is counted when
// the test is over (after every other cleanup, which is where Caddy stops).
func scenario(t *testing.T, name string) *figures {
	f := &figures{name: name, start: time.Now(), values: map[string]string{}}
	results.mu.Lock()
	results.scenarios = append(results.scenarios, f)
	results.mu.Unlock()
	t.Cleanup(func() {
		f.mu.Lock()
		f.failed = t.Failed()
		f.took = time.Since(f.start)
		f.mu.Unlock()
	})
	return f
}

// set records a figure; the first setting of a key fixes its place.
func (f *figures) set(key string, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.values[key]; !ok {
		f.keys = append(f.keys, key)
	}
	f.values[key] = fmt.Sprintf(format, args...)
}

func (f *figures) line() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	verdict := "PASS"
	if f.failed {
		verdict = "FAIL"
	}
	parts := make([]string, 0, len(f.keys))
	for _, k := range f.keys {
		parts = append(parts, k+"="+f.values[k])
	}
	return fmt.Sprintf("scenario %-28s %s (%s): %s", f.name, verdict, f.took.Round(time.Millisecond), strings.Join(parts, " "))
}

func (r *registry) summary() (passed, failed int, lines []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := append([]*figures(nil), r.scenarios...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].start.Before(list[j].start) })
	for _, f := range list {
		lines = append(lines, f.line())
		if f.failed {
			failed++
		} else {
			passed++
		}
	}
	return passed, failed, lines
}
