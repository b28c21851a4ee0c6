package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/store"
)

// assertStoreReleased opens the storage directory itself: it succeeds only
// when Caddy has closed Badger (one open per directory).
func assertStoreReleased(t *testing.T, dir string) {
	t.Helper()
	s, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatalf("storage still held after paybridge stopped: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRestartWithPendingWork(t *testing.T) {
	dir := t.TempDir()
	storage, ledger := filepath.Join(dir, "store"), filepath.Join(dir, "ledger")
	down := newRecorder(t, http.StatusServiceUnavailable) // the platform is down at first
	up := newRecorder(t, http.StatusOK)
	const secret = "restart-secret"
	const rotated = "restart-secret-rotated"
	cfg := func(callback string, secrets ...string) string {
		return stdConfig(t, cfgParams{
			Storage: storage, Ledger: ledger, Secrets: secrets, CallbackURL: callback,
			AsyncDelay: "1s",
		})
	}
	startCaddy(t, cfg(down.URL(), secret))
	send := func(source string) string {
		t.Helper()
		body := mustJSON(t, authorizeDoc("ep_"+uid(), source, 1000))
		return str(t, assertOK(t, post(t, clPath+"authorize", body, secret), http.StatusAccepted), "action_id")
	}

	// A: settled before the stop, but their callbacks were refused (503)
	var settled []string
	for range 3 {
		settled = append(settled, send("tok_async_"+uid()))
	}
	if !waitUntil(5*time.Second, func() bool {
		got := map[string]bool{}
		for _, c := range down.all() {
			got[actionOf(c.Body)] = true
		}
		return len(got) == len(settled)
	}) {
		t.Fatalf("callbacks of settled operations were not attempted:%s", down.dump())
	}
	// B: still pending at the PSP when Caddy stops (async_delay 1s)
	var pending []string
	for range 2 {
		pending = append(pending, send("tok_async_"+uid()))
	}
	// C: retrying in the background (the PSP is in an outage for 500ms)
	retrying := send("tok_outage_" + uid())

	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	assertStoreReleased(t, storage)
	time.Sleep(300 * time.Millisecond) // nothing may run while stopped
	for _, c := range down.all() {
		for _, id := range append(append([]string{}, pending...), retrying) {
			if actionOf(c.Body) == id {
				t.Errorf("operation %s was still meant to be pending at the stop, but its callback was sent: the test is too slow", id)
			}
		}
	}

	// start again, same storage, the platform is up; at a new URL and with
	// a rotated secret: queued callbacks find their URL and secret by
	// handler name at send time
	restartedAt := time.Now()
	startCaddy(t, cfg(up.URL(), rotated, secret))
	want := append(append(append([]string{}, settled...), pending...), retrying)
	if !waitUntil(9*time.Second, func() bool {
		got := map[string]bool{}
		for _, c := range up.delivered() {
			got[actionOf(c.Body)] = true
		}
		for _, id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("after the restart, not every callback arrived; want %v, got:%s", want, up.dump())
	}
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
	}
	for _, c := range up.all() {
		id := actionOf(c.Body)
		if !wanted[id] {
			t.Errorf("unexpected callback %s", c.Body)
			continue
		}
		checkCallback(t, c, rotated, id, true)
	}
	for _, c := range down.all() {
		if c.At.After(stoppedAt) {
			t.Errorf("a callback went to the old URL after paybridge stopped (at %s, stopped %s, restarted %s): %s",
				c.At.Format("15:04:05.000"), stoppedAt.Format("15:04:05.000"), restartedAt.Format("15:04:05.000"), c.Body)
		}
	}
	entries := readLedger(t, ledger)
	ledgerKeysUnique(t, entries)
	if ops := countOps(entries); ops["authorize"] != len(want) {
		t.Errorf("ledger %v, want %d authorize", ops, len(want))
	}
}

func TestReloadWhileServing(t *testing.T) {
	dir := t.TempDir()
	storage, ledger, logFile := filepath.Join(dir, "store"), filepath.Join(dir, "ledger"), filepath.Join(dir, "caddy.log")
	cb := newRecorder(t, http.StatusOK)
	suffix := uid()
	common := "common-" + suffix
	rotated := func(i int) string { return fmt.Sprintf("rotated-%d-%s", i, suffix) }
	cfg := func(i int) string {
		return stdConfig(t, cfgParams{
			Storage: storage, Ledger: ledger, CallbackURL: cb.URL(),
			Secrets: []string{rotated(i), common},
			Global:  "log {\n\t\toutput file " + logFile + "\n\t\tlevel INFO\n\t}",
		})
	}
	startCaddy(t, cfg(0))

	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
		failures []string
		tokens   []string // full tokens that must never be logged
		actions  []string
		retried  atomic.Int32
	)
	const workers = 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// one keep-alive connection per worker, so a retry after the
			// old server closed it goes out on a fresh one
			client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			for i := 0; !stop.Load(); i++ {
				source := "tok_visa_" + uid()
				want := http.StatusOK
				if w == 0 { // one worker leaves background work across the reloads
					source, want = "tok_async_"+uid(), http.StatusAccepted
				}
				body := mustJSON(t, authorizeDoc(fmt.Sprintf("ep_%d_%d_%s", w, i, uid()), source, 1000))
				hdr := map[string]string{"X-CommerceLayer-Signature": clSign(common, body)}
				// A connection-level failure (no HTTP answer at all) is
				// retried, with the identical body, on a fresh connection:
				// an idle connection the old server closed (EOF), or, on
				// Linux, a connection queued on the old server's
				// SO_REUSEPORT socket when Caddy closed it (reset). HTTP
				// answers are never retried.
				var tries []string
				r, err := tryDoWith(client, http.MethodPost, clPath+"authorize", body, hdr)
				for n := 0; err != nil && n < 2; n++ {
					tries = append(tries, err.Error())
					retried.Add(1)
					client.CloseIdleConnections()
					r, err = tryDoWith(client, http.MethodPost, clPath+"authorize", body, hdr)
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, fmt.Sprintf("%v (earlier tries: %v)", err, tries))
				} else {
					statuses[r.Status]++
					if r.Status != want {
						failures = append(failures, r.String())
					}
					if a := actionOf(r.Body); a != "" {
						actions = append(actions, a)
					}
					tokens = append(tokens, source, actionOf(r.Body))
					if tok := tokenOf(r.Body); tok != "" {
						tokens = append(tokens, tok)
					}
				}
				mu.Unlock()
			}
		}()
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, v := range statuses {
			n += v
		}
		return n
	}
	for i := 1; i <= 5; i++ {
		before := count()
		if !waitUntil(5*time.Second, func() bool { return count() >= before+5 }) {
			t.Fatalf("requests stopped being answered before reload %d", i)
		}
		if err := loadConfig(cfg(i)); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	before := count()
	waitUntil(5*time.Second, func() bool { return count() >= before+5 })
	stop.Store(true)
	wg.Wait()

	t.Logf("answers by status %v, %d client retries", statuses, retried.Load())
	for _, f := range failures {
		t.Errorf("request failed during reloads: %s", f)
	}
	// the old secret is gone, the new first one works
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	assertError(t, post(t, clPath+"authorize", body, rotated(4)), http.StatusUnauthorized, "invalid_signature")
	assertOK(t, post(t, clPath+"authorize", body, rotated(5)), http.StatusOK)
	// every operation answered 202 across the reloads is called back once
	if len(actions) == 0 {
		t.Error("no asynchronous operation was made")
	}
	secrets := []string{common}
	for i := range 6 {
		secrets = append(secrets, rotated(i))
	}
	for _, a := range actions {
		c := cb.waitAction(t, a, 5*time.Second)
		// signed with the first secret of the config live at send time
		signer := signedBy(c, secrets[1:])
		if signer == "" {
			t.Errorf("callback %s is signed with none of the first secrets", c.Body)
			continue
		}
		checkCallback(t, c, signer, a, true)
	}

	// Badger never fought its own lock, and nothing else failed in paybridge
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	logged := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		low := strings.ToLower(line)
		if strings.Contains(low, "lock") && (strings.Contains(low, "directory") || strings.Contains(low, "badger")) ||
			strings.Contains(low, "in use by another process") {
			t.Errorf("lock error in the log: %s", line)
		}
		if strings.Contains(line, `"level":"error"`) && strings.Contains(low, "paybridge") {
			t.Errorf("paybridge error in the log: %s", line)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("a shared secret is in the log: %s", line)
			}
		}
		for _, tok := range tokens {
			if tok != "" && strings.Contains(line, tok) {
				t.Errorf("a full token (%s) is in the log: %s", tok, line)
				break
			}
		}
		if strings.Contains(line, `"msg":"payment operation"`) {
			logged++
		}
	}
	if logged == 0 {
		t.Errorf("no payment operation was logged in %s: the log checks above saw nothing", logFile)
	}
	entries := readLedger(t, ledger)
	ledgerKeysUnique(t, entries)
}

func tokenOf(body []byte) string {
	var m struct {
		Data struct {
			Token string `json:"transaction_token"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return m.Data.Token
}

// TestValidateWhileRunning provisions a second config on the running
// storage, as `caddy validate` does: Provision must not open Badger.
func TestValidateWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.authorize("tok_visa_"+uid(), 100)
	cfg := adaptCaddyfile(t, stdConfig(t, cfgParams{
		Storage: e.storage, Secrets: []string{"x"}, CallbackURL: e.cb.URL(),
	}))
	if err := validateJSON(cfg); err != nil {
		t.Fatalf("validating a config that shares the running storage: %v", err)
	}
	// the running config still owns the store. (caddy.Validate in this
	// process stops the validated, never started, http app, which closes
	// this client's idle connection: that is Caddy's doing, hence a fresh
	// connection.)
	e.authorize("tok_visa_"+uid(), 100)
}

func TestStopReleasesStorage(t *testing.T) {
	e := newEnv(t)
	e.authorize("tok_visa_"+uid(), 100)
	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	assertStoreReleased(t, e.storage)
	// and it can be taken again
	startCaddy(t, stdConfig(t, cfgParams{Storage: e.storage, Secrets: []string{e.secret}, CallbackURL: e.cb.URL()}))
	e.authorize("tok_visa_"+uid(), 100)
}

// TestStopWithRequestInFlight stops paybridge (a config without it) while a
// request is in the middle of its PSP call. Caddy's HTTP app does not wait
// for in-flight requests on a config change, so paybridge must keep its
// store open for them: the request must get its normal answer (here 202,
// the PSP being in an outage), never a 5xx, and what it acknowledged must
// be durable.
func TestStopWithRequestInFlight(t *testing.T) {
	e := newEnv(t)
	done := make(chan response, 1)
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_outage_"+uid(), 1000))
	go func() {
		r, err := tryDo(http.MethodPost, clPath+"authorize", body, map[string]string{"X-CommerceLayer-Signature": clSign(e.secret, body)})
		if err != nil {
			r = response{Status: -1, Body: []byte(err.Error())}
		}
		done <- r
	}()
	time.Sleep(100 * time.Millisecond) // inside the 300ms deadline
	if err := loadConfig(emptyConfig); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.Status != http.StatusAccepted {
		t.Errorf("request in flight while paybridge stopped: %s, want 202", r)
	}
	if r.Status >= 500 || r.Status < 0 {
		return
	}
	// what was acknowledged survives: a restart finishes it and calls back
	action := actionOf(r.Body)
	assertStoreReleased(t, e.storage)
	startCaddy(t, stdConfig(t, cfgParams{Storage: e.storage, Ledger: e.ledger, Secrets: []string{e.secret}, CallbackURL: e.cb.URL()}))
	checkCallback(t, e.cb.waitAction(t, action, 5*time.Second), e.secret, action, true)
}

// TestReloadDuringPSPRetries reloads while a request is retrying a PSP
// that is briefly unreachable (a 300ms outage inside a 2s deadline). The
// PSP comes back well before the deadline, so the request must succeed
// (200 on an `unavailable fail` handler, where anything else is a 5xx
// that counts toward Commerce Layer's circuit breaker), reload or not.
func TestReloadDuringPSPRetries(t *testing.T) {
	dir := t.TempDir()
	cb := newRecorder(t, http.StatusOK)
	cfg := func(first string) string {
		return stdConfig(t, cfgParams{
			Storage: filepath.Join(dir, "store"), Ledger: filepath.Join(dir, "ledger"), CallbackURL: cb.URL(),
			Secrets: []string{first, "common"}, Outage: "300ms", Deadline: "2s",
		})
	}
	startCaddy(t, cfg("first"))
	send := func() chan response {
		done := make(chan response, 1)
		body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_outage_"+uid(), 1000))
		go func() {
			r, err := tryDo(http.MethodPost, failPath+"authorize", body, map[string]string{"X-CommerceLayer-Signature": clSign("common", body)})
			if err != nil {
				r = response{Status: -1, Body: []byte(err.Error())}
			}
			done <- r
		}()
		return done
	}
	// without a reload
	if r := <-send(); r.Status != http.StatusOK {
		t.Fatalf("without a reload: %s", r)
	}
	// with a reload while the request waits for the PSP
	done := send()
	time.Sleep(50 * time.Millisecond)
	if err := loadConfig(cfg("second")); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.Status != http.StatusOK {
		t.Errorf("a reload during the PSP call turned its answer into %s (after %s); want 200", r, r.Elapsed)
	}
}

// The engine, the store and the delivery worker outlive a reload. Their
// lines must go where the config now running says, not where the config
// that opened the store said.
func TestEngineLogFollowsReload(t *testing.T) {
	dir := t.TempDir()
	logA, logB := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	cb := newRecorder(t, http.StatusOK)
	const secret = "log-secret"
	cfg := func(file string) string {
		return stdConfig(t, cfgParams{Storage: filepath.Join(dir, "store"), Secrets: []string{secret}, CallbackURL: cb.URL(),
			Global: "log {\n\t\toutput file " + file + "\n\t\tlevel INFO\n\t}"})
	}
	authorize := func() {
		t.Helper()
		assertOK(t, post(t, clPath+"authorize", mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000)), secret), http.StatusOK)
	}
	lines := func(file string) int {
		b, _ := os.ReadFile(file)
		return strings.Count(string(b), `"msg":"payment operation"`)
	}
	startCaddy(t, cfg(logA))
	authorize()
	if !waitUntil(2*time.Second, func() bool { return lines(logA) == 1 }) {
		t.Fatalf("%d operation lines in the first config's log, want 1", lines(logA))
	}
	if err := loadConfig(cfg(logB)); err != nil {
		t.Fatal(err)
	}
	authorize()
	if !waitUntil(2*time.Second, func() bool { return lines(logB) == 1 }) {
		t.Fatalf("after the reload, %d operation lines in the new config's log (and %d in the old one's), want 1", lines(logB), lines(logA))
	}
	if n := lines(logA); n != 1 {
		t.Errorf("%d operation lines in the old config's log after the reload, want still 1", n)
	}
}
