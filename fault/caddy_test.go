//go:build fault

package fault

// The Caddy subprocess: a generated Caddyfile on free loopback ports, its
// own storage, ledger and HOME, started, killed (-9) and restarted.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Ports the caddymodule tests (2999, 9080, 9443) and a default Caddy (2019)
// use; the fault suite never takes them.
var reservedPorts = map[int]bool{2019: true, 2999: true, 9080: true, 9443: true, 80: true, 443: true}

// freePort returns a loopback TCP port nobody listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !reservedPorts[port] {
			return port
		}
	}
	t.Fatal("no free port found")
	return 0
}

// config fills the Caddyfile template.
type config struct {
	Admin, HTTP int
	Storage     string
	Ledger      string
	Callback    string
	Secrets     []string // shared_secret of both handlers; the first signs
	Deadline    string   // default 1s
	Outage      string   // sandbox outage; default 2s
	AsyncDelay  string   // default 200ms
}

var caddyfileTemplate = template.Must(template.New("Caddyfile").Funcs(template.FuncMap{
	"q": func(s string) string { return fmt.Sprintf("%q", s) },
	"qs": func(ss []string) string {
		out := make([]string, len(ss))
		for i, s := range ss {
			out[i] = fmt.Sprintf("%q", s)
		}
		return strings.Join(out, " ")
	},
}).Parse(`{
	admin 127.0.0.1:{{.Admin}}
	persist_config off
	auto_https off
	http_port {{.HTTP}}
	paybridge {
		storage {{q .Storage}}
		reconcile_interval 50ms
		retry_backoff 50ms 500ms
		gateway default sandbox {
			async_delay {{.AsyncDelay}}
			outage {{.Outage}}
			ledger {{q .Ledger}}
		}
	}
}

http://127.0.0.1:{{.HTTP}} {
	bind 127.0.0.1
	handle /cl/* {
		paybridge commercelayer {
			name cl
			shared_secret {{qs .Secrets}}
			callback_url {{q .Callback}}
			deadline {{.Deadline}}
		}
	}
	handle /clfail/* {
		paybridge commercelayer {
			name clfail
			shared_secret {{qs .Secrets}}
			callback_url {{q .Callback}}
			deadline {{.Deadline}}
			unavailable fail
		}
	}
}
`))

func (c config) render() string {
	if c.Deadline == "" {
		c.Deadline = "1s"
	}
	if c.Outage == "" {
		c.Outage = "2s"
	}
	if c.AsyncDelay == "" {
		c.AsyncDelay = "200ms"
	}
	var b strings.Builder
	if err := caddyfileTemplate.Execute(&b, c); err != nil {
		panic(err)
	}
	return b.String()
}

// caddy is one test's Caddy subprocess and what survives its restarts:
// ports, storage, ledger, and the logs of every run.
type caddy struct {
	t       *testing.T
	dir     string
	cfg     config
	cfgPath string
	base    string // http://127.0.0.1:<port>
	admin   string // http://127.0.0.1:<port>
	logs    []string

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	runs int
}

// newCaddy prepares (without starting) a Caddy whose storage and ledger
// are fresh, in t.TempDir(). cfg's ports, storage and ledger are filled in.
func newCaddy(t *testing.T, cfg config) *caddy {
	t.Helper()
	dir := t.TempDir()
	cfg.Admin = freePort(t)
	cfg.HTTP = freePort(t)
	for cfg.HTTP == cfg.Admin {
		cfg.HTTP = freePort(t)
	}
	cfg.Storage = filepath.Join(dir, "store")
	cfg.Ledger = filepath.Join(dir, "ledger")
	c := &caddy{
		t:       t,
		dir:     dir,
		cfg:     cfg,
		cfgPath: filepath.Join(dir, "Caddyfile"),
		base:    fmt.Sprintf("http://127.0.0.1:%d", cfg.HTTP),
		admin:   fmt.Sprintf("http://127.0.0.1:%d", cfg.Admin),
	}
	for _, sub := range []string{"home", "config", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Registered after t.TempDir, so it runs before the directory is
	// removed: Badger and the ledger are closed first.
	t.Cleanup(c.stop)
	return c
}

// start writes the Caddyfile and runs Caddy until its paybridge app and
// HTTP server answer.
func (c *caddy) start() {
	c.t.Helper()
	if err := os.WriteFile(c.cfgPath, []byte(c.cfg.render()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.runs++
	logPath := filepath.Join(c.dir, fmt.Sprintf("caddy-%d.log", c.runs))
	logFile, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	c.logs = append(c.logs, logPath)
	cmd := exec.Command(caddyBin, "run", "--config", c.cfgPath, "--adapter", "caddyfile")
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(),
		"HOME="+filepath.Join(c.dir, "home"),
		"XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
		"XDG_DATA_HOME="+filepath.Join(c.dir, "data"),
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		c.t.Fatalf("starting Caddy: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	c.cmd, c.done = cmd, done
	if err := c.waitReady(20 * time.Second); err != nil {
		c.t.Fatalf("Caddy run %d did not become ready: %v\n%s", c.runs, err, c.logTail(40))
	}
}

// waitReady polls the admin API until the paybridge app has started, and
// the HTTP port until it accepts connections.
func (c *caddy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-c.done:
			return errors.New("Caddy exited")
		default:
		}
		ready := false
		if resp, err := client.Get(c.admin + "/paybridge/outbox?limit=1"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ready = resp.StatusCode == http.StatusOK
		}
		if ready {
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.base, "http://"), time.Second)
			if err == nil {
				conn.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill9 sends SIGKILL and waits for the process to be gone.
func (c *caddy) kill9() {
	c.t.Helper()
	if c.cmd == nil {
		return
	}
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		c.t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("Caddy survived kill -9 for 10s")
	}
	c.cmd = nil
}

// stop ends Caddy gracefully (SIGINT), or with SIGKILL after 15s.
func (c *caddy) stop() {
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		c.t.Errorf("Caddy did not stop within 15s of SIGINT; killing it")
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.done
	}
	c.cmd = nil
}

// load posts a Caddyfile to the admin endpoint's /load.
func (c *caddy) load(cfg config) error {
	cfg.Admin, cfg.HTTP, cfg.Storage, cfg.Ledger = c.cfg.Admin, c.cfg.HTTP, c.cfg.Storage, c.cfg.Ledger
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.admin+"/load", strings.NewReader(cfg.render()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	c.cfg = cfg
	return nil
}

// logLines returns every line Caddy wrote (stdout and stderr), all runs.
func (c *caddy) logLines() []string {
	var out []string
	for _, p := range c.logs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out = append(out, sc.Text())
		}
	}
	return out
}

func (c *caddy) logTail(n int) string {
	lines := c.logLines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- Caddy log tail:\n" + strings.Join(lines, "\n")
}
