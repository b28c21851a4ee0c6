//go:build fault

package fault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReloadUnderLoad reloads the config every second for ~6s (POST /load,
// the shared secrets alternating between [s1] and [s1 s2]) while clients
// send authorizations signed with s1. Caddy starts each new config before
// it stops the old one, so paybridge must share its Badger store across
// them: no lock error in Caddy's log, and no request failed by the server.
// A transport error on a reused idle connection that the old config closed
// may be retried (up to 3 times, as long as that is the error), with the
// same body; nothing else is excused.
// lockWord finds lock errors (Badger's "Cannot acquire directory lock",
// paybridge's "in use by another process") but not "block" or "clock".
var lockWord = regexp.MustCompile(`\block(ed|ing)?\b`)

// postRetryingReused posts body to /cl/authorize; a transport error on a
// reused idle connection (which the old config's server closed) is retried,
// with the same body. Any other transport error is returned, named
// for what it is: the server dropped a fresh connection without answering.
func postRetryingReused(client *http.Client, base string, body []byte, secret string, retried *atomic.Int64) (response, error) {
	r, err := post(client, base, "/cl/authorize", body, secret)
	var te *transportError
	// Each retry may itself pick another idle connection the old config
	// closed (several are pooled): retried while that is the error.
	for tries := 0; tries < 3 && errors.As(err, &te) && te.reused; tries++ {
		retried.Add(1)
		r, err = post(client, base, "/cl/authorize", body, secret)
	}
	if errors.As(err, &te) && te.reused {
		return r, fmt.Errorf("three retries after reused connections failed too: %w", err)
	}
	if errors.As(err, &te) && !te.reused {
		return r, fmt.Errorf("a fresh connection was dropped without an answer: %w", err)
	}
	return r, err
}

func TestReloadUnderLoad(t *testing.T) {
	fig := scenario(t, "reload-under-load")
	const (
		reloads = 6
		workers = 4
	)
	cb := newListener(t, s1)
	base := config{Secrets: []string{s1}, Callback: cb.URL()}
	c := newCaddy(t, base)
	c.start()
	client := newHTTPClient()

	var requests, ok200, retried atomic.Int64
	probs := &problems{}
	var mu sync.Mutex
	var tokens []string
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				id := uid()
				body := authorizeBody("ep_"+id, "tok_visa_"+id, 1000)
				requests.Add(1)
				r, err := postRetryingReused(client, c.base, body, s1, &retried)
				switch {
				case err != nil:
					probs.add("no answer: %v", err)
				case r.Status/100 == 5:
					probs.add("server failure: %s", r)
				case r.Status != http.StatusOK:
					probs.add("refused (signed with s1, which every config has): %s", r)
				default:
					a, err := parseAnswer(r.Body)
					if err != nil || !a.Success || a.Data.TransactionToken == "" {
						probs.add("malformed 200: %s", r)
						continue
					}
					ok200.Add(1)
					mu.Lock()
					tokens = append(tokens, a.Data.TransactionToken)
					mu.Unlock()
				}
			}
		}()
	}

	// Reload every second: odd reloads add s2, even ones drop it.
	loads := 0
	start := time.Now()
	var slowestLoad time.Duration
	for i := 1; i <= reloads; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second)))
		cfg := base
		if i%2 == 1 {
			cfg.Secrets = []string{s1, s2}
		}
		before := time.Now()
		if err := c.load(cfg); err != nil {
			t.Errorf("reload %d: %v", i, err)
			continue
		}
		slowestLoad = max(slowestLoad, time.Since(before))
		loads++
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	elapsed := time.Since(start)
	probs.report(t, "client")
	if ok200.Load() < 50 {
		t.Errorf("only %d requests answered during the reloads", ok200.Load())
	}

	// The reloads took effect: the last config (an even reload) has only s1.
	probe := func(secret string) int {
		id := uid()
		requests.Add(1)
		r, err := postRetryingReused(client, c.base, authorizeBody("ep_"+id, "tok_visa_"+id, 1000), secret, &retried)
		if err != nil {
			t.Errorf("probe: %v", err)
			return 0
		}
		return r.Status
	}
	client.CloseIdleConnections()
	if st := probe(s2); st != http.StatusUnauthorized {
		t.Errorf("signed with s2 after the last reload (secrets [s1]): HTTP %d, want 401", st)
	}
	if err := c.load(config{Secrets: []string{s1, s2}, Callback: cb.URL()}); err != nil {
		t.Errorf("reload with [s1 s2]: %v", err)
	} else {
		loads++
		client.CloseIdleConnections()
		if st := probe(s2); st != http.StatusOK {
			t.Errorf("signed with s2 after a reload with secrets [s1 s2]: HTTP %d, want 200", st)
		}
	}

	// No lock error, nor any paybridge error, in Caddy's log.
	lockErrors, paybridgeErrors := 0, 0
	for _, line := range c.logLines() {
		low := strings.ToLower(line)
		if lockWord.MatchString(low) && (strings.Contains(low, "directory") || strings.Contains(low, "badger") ||
			strings.Contains(low, `"level":"error"`) || strings.Contains(low, `"level":"warn"`)) ||
			strings.Contains(low, "in use by another process") {
			lockErrors++
			t.Errorf("lock error in Caddy's log: %s", line)
		}
		if strings.Contains(low, `"level":"error"`) && strings.Contains(low, `"logger":"paybridge`) {
			paybridgeErrors++
			t.Errorf("paybridge error in Caddy's log: %s", line)
		}
	}

	// Everything answered 200 is in the store, succeeded, executed once.
	missing := 0
	for _, tok := range tokens {
		p, err := c.getPayment(tok)
		if err != nil {
			t.Fatalf("admin API: %v", err)
		}
		if p == nil || p.tx(tok) == nil || p.tx(tok).State != "succeeded" {
			missing++
			if missing <= 10 {
				t.Errorf("authorization %s answered 200 is not succeeded in the store: %+v", tok, p)
			}
		}
	}
	entries := readLedger(t, c.cfg.Ledger)
	dups := checkNoDoubleExecution(t, entries)

	fig.set("requests", "%d", requests.Load()+retried.Load())
	fig.set("2xx", "%d", ok200.Load())
	fig.set("client_retries_on_reused_conn", "%d", retried.Load())
	fig.set("failed", "%d", probs.count())
	fig.set("reloads", "%d", loads)
	fig.set("slowest_reload", "%s", slowestLoad.Round(time.Millisecond))
	fig.set("load_duration", "%s", elapsed.Round(time.Millisecond))
	fig.set("lock_errors", "%d", lockErrors)
	fig.set("paybridge_errors", "%d", paybridgeErrors)
	fig.set("missing_in_store", "%d", missing)
	fig.set("ledger_lines", "%d", len(entries))
	fig.set("double_executions", "%d", dups)
}
