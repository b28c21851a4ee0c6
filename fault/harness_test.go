//go:build fault

package fault

// The test side: a client that signs Commerce Layer calls, the admin API,
// a callback listener that verifies signatures, body builders and the
// sandbox ledger.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/paybridge/caddy-paybridge/internal/cltest"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
)

const (
	s1 = "fault-secret-one"
	s2 = "fault-secret-two"
)

// --- signing and requests ---------------------------------------------------

var sign = cltest.Sign

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        100,
			MaxIdleConnsPerHost: 100,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

type response struct {
	Status  int
	Body    []byte
	Elapsed time.Duration
	Reused  bool // the request went out on a reused (idle) connection
}

func (r response) String() string { return fmt.Sprintf("HTTP %d %s", r.Status, r.Body) }

// transportError is an attempt that got no HTTP answer.
type transportError struct {
	err    error
	reused bool
}

func (e *transportError) Error() string {
	return fmt.Sprintf("%v (reused connection: %v)", e.err, e.reused)
}

// post sends body to base+path, signed with secret.
func post(client *http.Client, base, path string, body []byte, secret string) (response, error) {
	var reused atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused.Store(info.Reused) }}
	ctx := httptrace.WithClientTrace(context.Background(), trace)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.api+json")
	req.Header.Set("X-CommerceLayer-Signature", sign(secret, body))
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return response{}, &transportError{err: err, reused: reused.Load()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, &transportError{err: err, reused: reused.Load()}
	}
	return response{Status: resp.StatusCode, Body: b, Elapsed: time.Since(start), Reused: reused.Load()}, nil
}

// answer is a Commerce Layer answer.
type answer struct {
	Success bool `json:"success"`
	Data    struct {
		TransactionToken string            `json:"transaction_token"`
		AmountCents      int64             `json:"amount_cents"`
		ActionID         string            `json:"action_id"`
		Metadata         map[string]string `json:"metadata"`
	} `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func parseAnswer(b []byte) (answer, error) {
	var a answer
	err := json.Unmarshal(b, &a)
	return a, err
}

// --- the admin API ------------------------------------------------------------

type txView struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Token    string `json:"token"`
	Parent   string `json:"parent"`
	Amount   int64  `json:"amount"`
	State    string `json:"state"`
	PSPKey   string `json:"psp_key"`
	ActionID string `json:"action_id"`
	Verify   bool   `json:"verify"`
	Code     string `json:"code"`
	// ExecutedAnyway: the PSP did it after the platform was told it failed;
	// paybridge counts its amount.
	ExecutedAnyway bool `json:"executed_anyway"`
}

type paymentView struct {
	ID         string   `json:"id"`
	Status     string   `json:"status"`
	Currency   string   `json:"currency"`
	Amount     int64    `json:"amount"`
	Authorized int64    `json:"authorized"`
	Captured   int64    `json:"captured"`
	Refunded   int64    `json:"refunded"`
	Txs        []txView `json:"transactions"`
}

func (p *paymentView) tx(token string) *txView {
	for i := range p.Txs {
		if p.Txs[i].Token == token {
			return &p.Txs[i]
		}
	}
	return nil
}

// open reports whether a transaction of p is not final yet.
func (p *paymentView) open() bool {
	for _, t := range p.Txs {
		if (t.State != "succeeded" && t.State != "failed") || t.Verify {
			return true
		}
	}
	return false
}

var adminClient = &http.Client{Timeout: 10 * time.Second}

// getPayment asks the admin API for the payment a token (payment id,
// transaction token, action id) belongs to; nil when it is not found.
func (c *caddy) getPayment(token string) (*paymentView, error) {
	resp, err := adminClient.Get(c.admin + "/paybridge/payments/" + token)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API: HTTP %d: %s", resp.StatusCode, b)
	}
	var p paymentView
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("admin API: %v: %s", err, b)
	}
	return &p, nil
}

// outbox lists the outbox (state pending or dead).
func (c *caddy) outbox(state string) ([]json.RawMessage, error) {
	resp, err := adminClient.Get(c.admin + "/paybridge/outbox?state=" + state)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("admin API: HTTP %d: %s", resp.StatusCode, b)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("admin API: %v: %s", err, b)
	}
	return list, nil
}

// --- the callback listener --------------------------------------------------------

// cbCall is one request the listener got.
type cbCall struct {
	N        int
	At       time.Time
	ActionID string
	Success  bool
	SigOK    bool
	Answered int
	Body     []byte
}

// listener is a stand-in for Commerce Layer's webhook endpoint on loopback.
// It verifies X-CommerceLayer-Signature (base64 HMAC-SHA256 of the exact
// body, with crypto/hmac) on every request, answers 401 to a bad one and
// its current status to the others.
type listener struct {
	srv    *httptest.Server
	secret string
	status atomic.Int32
	mu     sync.Mutex
	calls  []cbCall
	bad    []string
}

func newListener(t *testing.T, secret string) *listener {
	t.Helper()
	l := &listener{secret: secret}
	l.status.Store(http.StatusOK)
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve)) // 127.0.0.1:0
	t.Cleanup(l.srv.Close)
	return l
}

func (l *listener) URL() string { return l.srv.URL + "/cb" }

func (l *listener) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	at := time.Now()
	want := sign(l.secret, body)
	got := r.Header.Get("X-CommerceLayer-Signature")
	sigOK := err == nil && hmac.Equal([]byte(got), []byte(want))
	var m struct {
		Success bool `json:"success"`
		Data    struct {
			ActionID string `json:"action_id"`
		} `json:"data"`
	}
	jsonErr := json.Unmarshal(body, &m)
	status := int(l.status.Load())
	if !sigOK {
		status = http.StatusUnauthorized
	}
	l.mu.Lock()
	c := cbCall{N: len(l.calls) + 1, At: at, ActionID: m.Data.ActionID, Success: m.Success, SigOK: sigOK, Answered: status, Body: body}
	l.calls = append(l.calls, c)
	switch {
	case !sigOK:
		l.bad = append(l.bad, fmt.Sprintf("bad signature %q on %s (%s %s)", got, body, r.Method, r.URL.Path))
	case r.Method != http.MethodPost || r.URL.Path != "/cb":
		l.bad = append(l.bad, fmt.Sprintf("callback %s %s, want POST /cb", r.Method, r.URL.Path))
	case jsonErr != nil || m.Data.ActionID == "":
		l.bad = append(l.bad, fmt.Sprintf("callback without an action_id: %s", body))
	}
	l.mu.Unlock()
	w.WriteHeader(status)
}

func (l *listener) all() []cbCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]cbCall(nil), l.calls...)
}

// delivered maps each action id to its first request answered 2xx.
func (l *listener) delivered() map[string]cbCall {
	out := map[string]cbCall{}
	for _, c := range l.all() {
		if c.Answered/100 == 2 {
			if _, seen := out[c.ActionID]; !seen {
				out[c.ActionID] = c
			}
		}
	}
	return out
}

// duplicates counts 2xx deliveries beyond the first per action id (allowed:
// delivery is at least once).
func (l *listener) duplicates() int {
	n := 0
	seen := map[string]bool{}
	for _, c := range l.all() {
		if c.Answered/100 == 2 {
			if seen[c.ActionID] {
				n++
			}
			seen[c.ActionID] = true
		}
	}
	return n
}

// check reports signature and shape problems.
func (l *listener) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, b := range l.bad {
		if i == 10 {
			t.Errorf("... and %d more listener problems", len(l.bad)-10)
			break
		}
		t.Errorf("listener: %s", b)
	}
}

// --- bodies ------------------------------------------------------------------------

// uid is a short random suffix for ids and sandbox tokens.
func uid() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// The Commerce Layer documents of internal/cltest, as request bodies.
func authorizeBody(id, sourceToken string, amount int64) []byte {
	return mustJSON(cltest.AuthorizeDoc(id, sourceToken, amount))
}

func captureBody(id, authToken string, authAmount, capture, balance int64) []byte {
	return mustJSON(cltest.CaptureDoc(id, authToken, authAmount, capture, balance))
}

// refundBody: number tells refunds of one capture apart.
func refundBody(id, number, captureToken string, captureAmount, refund, balance int64) []byte {
	return mustJSON(cltest.RefundDoc(id, number, captureToken, captureAmount, refund, balance))
}

// --- the ledger ---------------------------------------------------------------------

// readLedger reads the sandbox ledger; a missing file is an empty ledger.
func readLedger(t *testing.T, path string) []sandbox.Entry {
	t.Helper()
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	entries, err := sandbox.ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// ledgerIndex maps "op key" to the number of lines with that pair.
func ledgerIndex(entries []sandbox.Entry) map[string]int {
	out := map[string]int{}
	for _, e := range entries {
		out[e.Op+" "+e.Key]++
	}
	return out
}

// checkNoDoubleExecution fails for every (operation, key) pair the sandbox
// executed more than once: a double charge. It returns how many there were.
func checkNoDoubleExecution(t *testing.T, entries []sandbox.Entry) int {
	t.Helper()
	dups := 0
	for k, n := range ledgerIndex(entries) {
		if n > 1 {
			dups++
			if dups <= 10 {
				t.Errorf("ledger: %q executed %d times (a double charge)", k, n)
			}
		}
	}
	if dups > 10 {
		t.Errorf("ledger: %d (operation, key) pairs executed more than once in all", dups)
	}
	return dups
}

// checkLedgerBooked fails for every operation the sandbox executed that
// paybridge did not book: the sandbox answers a repeat under a key it has
// executed without executing it again, so a double charge shows as one
// operation under two keys, one of which no succeeded transaction holds.
// An authorization verification found and voided is booked by its void. It
// returns how many were not booked.
func checkLedgerBooked(t *testing.T, c *caddy, entries []sandbox.Entry) int {
	t.Helper()
	executed := ledgerIndex(entries)
	unbooked := 0
	for _, e := range entries {
		switch e.Op {
		case "authorize", "capture", "refund":
		case "void":
			if executed["authorize "+strings.TrimSuffix(e.Key, "_void")] > 0 {
				continue // verification's void of an authorization
			}
		default:
			continue
		}
		if e.Op == "authorize" && executed["void "+e.Key+"_void"] > 0 {
			continue
		}
		p, err := c.getPayment(e.Key)
		if err != nil {
			t.Errorf("ledger: looking up key %s: %v", e.Key, err)
			continue
		}
		booked := false
		if p != nil {
			for _, tx := range p.Txs {
				if tx.PSPKey == e.Key && tx.Kind == e.Op && (tx.State == "succeeded" || tx.ExecutedAnyway) {
					booked = true
				}
			}
		}
		if !booked {
			unbooked++
			if unbooked <= 10 {
				t.Errorf("ledger: the PSP executed %s %d under key %s, and no transaction booked it", e.Op, e.Amount, e.Key)
			}
		}
	}
	return unbooked
}

// --- polling and error capping ------------------------------------------------------

// waitUntil polls cond every 50ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// problems collects failures from many goroutines and reports at most a
// few of each test, so that one systematic fault does not flood the log.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(format string, args ...any) {
	p.mu.Lock()
	p.list = append(p.list, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *problems) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.list)
}

func (p *problems) report(t *testing.T, what string) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, s := range p.list {
		if i == 15 {
			t.Errorf("... %d %s problems in all", len(p.list), what)
			return
		}
		t.Errorf("%s: %s", what, s)
	}
}

// short abbreviates a body for messages.
func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
