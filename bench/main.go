// Command bench is paybridge's load benchmark. It builds the custom Caddy
// (./cmd/caddy), runs it on loopback with a generated Caddyfile, drives it
// with keep-alive HTTP connections and prints the results as Markdown on
// standard output (progress goes to standard error). See bench/README.md.
//
//	go run ./bench -duration 20s -concurrency 64
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	mode        string
	duration    time.Duration
	concurrency int
	asyncDelay  time.Duration
	reconcile   time.Duration
	asyncRate   float64
	pacedRate   float64
	payments    []int
	window      time.Duration
	growTimeout time.Duration
	rest        time.Duration
	warmup      time.Duration
	keep        bool
	caddyBin    string
}

func parseFlags(args []string) (config, error) {
	var c config
	var payments string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "sync", "sync, async, latency or growth")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of each measured phase (and the cap on the async drain)")
	fs.IntVar(&c.concurrency, "concurrency", 64, "goroutines, each with its own keep-alive connection (also the Badger phase's goroutines)")
	fs.DurationVar(&c.asyncDelay, "async-delay", 100*time.Millisecond, "sandbox async_delay (how long tok_async stays pending)")
	fs.DurationVar(&c.reconcile, "reconcile-interval", 50*time.Millisecond, "paybridge reconcile_interval in -mode async (other modes use the module default, 2s)")
	fs.Float64Var(&c.asyncRate, "async-rate", 0, "-mode async: send tok_async authorizes open-loop at this rate a second (0: closed loop, as fast as they are answered)")
	fs.Float64Var(&c.pacedRate, "paced-rate", 0, "-mode latency: pace the open-loop phase at this rate a second instead of half the measured peak")
	fs.StringVar(&payments, "payments", "1000,100000", "-mode growth: store sizes (payments) to measure at, comma-separated")
	fs.DurationVar(&c.window, "window", 10*time.Second, "-mode growth: length of the throughput window at each size")
	fs.DurationVar(&c.growTimeout, "grow-timeout", 30*time.Minute, "-mode growth: cap on growing the store to one size")
	fs.DurationVar(&c.rest, "rest", 0, "-mode growth: after the last window, leave Caddy idle this long and report its RSS at rest")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "unmeasured GET /respond load before the first phase (opens the connections)")
	fs.BoolVar(&c.keep, "keep", false, "keep the temporary directory (Caddy binary, Caddyfile, log, storage)")
	fs.StringVar(&c.caddyBin, "caddy", "", "use this Caddy binary instead of building ./cmd/caddy")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch c.mode {
	case "sync", "async", "latency", "growth":
	default:
		return c, fmt.Errorf("-mode must be sync, async, latency or growth, not %q", c.mode)
	}
	if c.duration <= 0 || c.window <= 0 || c.growTimeout <= 0 || c.warmup < 0 || c.asyncDelay < 0 || c.reconcile <= 0 || c.asyncRate < 0 || c.pacedRate < 0 || c.rest < 0 {
		return c, errors.New("durations must be positive")
	}
	if c.concurrency < 1 || c.concurrency > 4096 {
		return c, errors.New("-concurrency must be between 1 and 4096")
	}
	for _, s := range strings.Split(payments, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("-payments: bad size %q", s)
		}
		c.payments = append(c.payments, n)
	}
	sort.Ints(c.payments)
	return c, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run sets up the temporary directory and always cleans up after the mode:
// Caddy is stopped (killed if it does not exit) and the directory removed
// unless -keep.
func run(ctx context.Context, cfg config) (err error) {
	tmp, err := os.MkdirTemp("", "paybridge-bench-")
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, tmp: tmp, started: time.Now(), errs: newErrSamples()}
	defer func() {
		b.shutdown()
		if cfg.keep {
			logf("kept %s", tmp)
		} else if rerr := os.RemoveAll(tmp); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	if err := b.prepare(ctx); err != nil {
		return err
	}
	switch cfg.mode {
	case "sync":
		err = b.runSync(ctx)
	case "async":
		err = b.runAsync(ctx)
	case "latency":
		err = b.runLatency(ctx)
	case "growth":
		err = b.runGrowth(ctx)
	}
	if err == nil && ctx.Err() != nil {
		err = errors.New("interrupted")
	}
	return err
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// commandLine is the command as the user typed it (go run hides the name).
func commandLine() string {
	return strings.TrimSpace("go run ./bench " + strings.Join(os.Args[1:], " "))
}
