package main

import (
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
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// bench is one run: the temporary directory, the Caddy under test, the
// HTTP client and the counters every phase shares.
type bench struct {
	cfg     config
	tmp     string
	started time.Time
	root    string // module root
	storage string // paybridge's Badger directory
	secret  []byte
	runID   string

	caddy   *caddyProc
	base    string // http://127.0.0.1:<port>
	client  *http.Client
	cb      *callbackServer
	machine machineInfo

	seq       atomic.Uint64 // unique ids for data.id and tokens
	payments  atomic.Int64  // payments created (authorizes answered 200 or 202 for a new data.id)
	lowMemory atomic.Bool   // -mode growth: MemAvailable fell under minMemAvailable
	errs      *errSamples
}

// prepare builds Caddy, starts the callback listener and Caddy, and checks
// that a signed authorize goes through.
func (b *bench) prepare(ctx context.Context) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return errors.New("not inside a Go module: run from the paybridge checkout")
	}
	b.root = filepath.Dir(mod)
	b.machine = readMachine(ctx, b.root)
	b.secret = []byte("bench-shared-secret-" + randomHex(8))
	b.runID = randomHex(4)
	b.storage = filepath.Join(b.tmp, "storage")

	bin := b.cfg.caddyBin
	if bin == "" {
		bin = filepath.Join(b.tmp, "caddy")
		logf("building Caddy: go build -o %s ./cmd/caddy (in %s)", bin, b.root)
		start := time.Now()
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
		build.Dir = b.root
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building Caddy: %v", err)
		}
		logf("built in %s", time.Since(start).Round(100*time.Millisecond))
	}
	if out, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil {
		b.machine.caddy = strings.TrimSpace(string(out))
	}

	b.cb, err = startCallbackServer(b.secret)
	if err != nil {
		return err
	}
	site, err := freePort()
	if err != nil {
		return err
	}
	admin, err := freePort()
	if err != nil {
		return err
	}
	reconcile := ""
	if b.cfg.mode == "async" {
		reconcile = b.cfg.reconcile.String()
	}
	caddyfile := generateCaddyfile(caddyfileParams{
		AdminPort: admin, SitePort: site, Storage: b.storage, Secret: string(b.secret),
		CallbackURL: b.cb.url, AsyncDelay: b.cfg.asyncDelay, ReconcileInterval: reconcile,
	})
	cfgPath := filepath.Join(b.tmp, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	b.base = fmt.Sprintf("http://127.0.0.1:%d", site)
	b.client = newClient(b.cfg.concurrency)

	b.caddy, err = startCaddy(bin, cfgPath, b.tmp)
	if err != nil {
		return err
	}
	logf("Caddy pid %d on %s (admin 127.0.0.1:%d), log %s", b.caddy.pid(), b.base, admin, b.caddy.logPath)
	if err := b.waitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	// One signed authorize→capture proves the pipeline before anything is
	// measured (it is not counted in any phase, but its payment is).
	var w worker
	w.init(0, 4)
	if !b.syncFlow(ctx, &w, "warmup") {
		return fmt.Errorf("the warm-up authorize→capture flow failed: %s", b.errs.first("warmup"))
	}
	return nil
}

func (b *bench) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		if b.caddy.exited() {
			return fmt.Errorf("Caddy exited during startup; log:\n%s", b.caddy.logTail(4096))
		}
		st, body, err := b.get(ctx, "/respond")
		if err == nil && st == http.StatusOK && string(body) == "ok" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("Caddy was not ready within %s; log:\n%s", limit, b.caddy.logTail(4096))
}

// shutdown stops Caddy and the callback listener; safe to call twice.
func (b *bench) shutdown() {
	if b.client != nil {
		b.client.CloseIdleConnections()
	}
	if b.caddy != nil {
		if err := b.caddy.stop(30 * time.Second); err != nil {
			logf("stopping Caddy: %v", err)
		}
	}
	if b.cb != nil {
		b.cb.close()
	}
}

type caddyfileParams struct {
	AdminPort, SitePort int
	Storage, Secret     string
	CallbackURL         string
	AsyncDelay          time.Duration
	ReconcileInterval   string // "" for the module's default
}

func generateCaddyfile(p caddyfileParams) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n", p.AdminPort)
	fmt.Fprintf(&sb, "\tpaybridge {\n\t\tstorage %s\n", p.Storage)
	if p.ReconcileInterval != "" {
		fmt.Fprintf(&sb, "\t\treconcile_interval %s\n", p.ReconcileInterval)
	}
	fmt.Fprintf(&sb, "\t\tgateway default sandbox {\n\t\t\tasync_delay %s\n\t\t}\n\t}\n}\n\n", p.AsyncDelay)
	fmt.Fprintf(&sb, "http://127.0.0.1:%d {\n", p.SitePort)
	sb.WriteString("\thandle /respond {\n\t\trespond \"ok\" 200\n\t}\n")
	sb.WriteString("\thandle /commercelayer/* {\n\t\tpaybridge commercelayer {\n\t\t\tname commercelayer\n\t\t\tgateway default\n")
	fmt.Fprintf(&sb, "\t\t\tshared_secret %s\n\t\t\tcallback_url %s\n\t\t}\n\t}\n}\n", p.Secret, p.CallbackURL)
	return sb.String()
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newClient keeps one idle keep-alive connection per goroutine and never
// uses a proxy (the zero Transport ignores HTTP_PROXY).
func newClient(concurrency int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        concurrency * 2,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		},
	}
}

// caddyProc is the Caddy under test.
type caddyProc struct {
	cmd     *exec.Cmd
	logPath string
	logFile *os.File
	done    chan struct{}
	waitErr error

	rss *rssSampler

	stopping atomic.Bool // stop was called: an exit is expected
	stopOnce sync.Once
	stopErr  error
}

func startCaddy(bin, cfgPath, tmp string) (*caddyProc, error) {
	home := filepath.Join(tmp, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	logPath := filepath.Join(tmp, "caddy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Dir = tmp
	// Caddy's data and config directories go to the temporary directory.
	cmd.Env = append(os.Environ(), "HOME="+home,
		"XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a Ctrl-C reaches only us and we stop it in
	// order; killed if this process dies without stopping it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting Caddy: %v", err)
	}
	c := &caddyProc{cmd: cmd, logPath: logPath, logFile: logFile, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	c.rss = startRSSSampler(cmd.Process.Pid, 500*time.Millisecond, c.done)
	return c, nil
}

func (c *caddyProc) pid() int { return c.cmd.Process.Pid }

func (c *caddyProc) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// crashed reports whether Caddy exited without being asked to.
func (c *caddyProc) crashed() bool { return c.exited() && !c.stopping.Load() }

// stop asks Caddy to exit (SIGTERM: it stops its apps, so Badger closes
// cleanly) and kills it after grace.
func (c *caddyProc) stop(grace time.Duration) error {
	c.stopping.Store(true)
	c.stopOnce.Do(func() {
		defer c.logFile.Close()
		if c.exited() {
			return
		}
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(grace):
			_ = c.cmd.Process.Kill()
			<-c.done
			c.stopErr = fmt.Errorf("Caddy did not exit within %s of SIGTERM; killed", grace)
		}
	})
	return c.stopErr
}

// logTail returns up to n bytes of the end of Caddy's log.
func (c *caddyProc) logTail(n int64) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(bytes.TrimSpace(b))
}
