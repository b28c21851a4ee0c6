package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The Commerce Layer side. Bodies follow the README's walkthrough; every
// body is signed the way Commerce Layer signs (base64 HMAC-SHA256 of the
// exact bytes). The signing is done here with crypto/hmac, not with the
// module's signature package, so the benchmark checks it independently.

const clSignatureHeader = "X-CommerceLayer-Signature"

func clSign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// authorizeBody is an authorize for 129.00 EUR with a unique data.id and
// order; token selects the sandbox's behaviour.
func authorizeBody(run string, n uint64, tokenPrefix string) []byte {
	id := run + "_" + strconv.FormatUint(n, 10)
	b := make([]byte, 0, 400)
	b = append(b, `{"data":{"id":"ep_`...)
	b = append(b, id...)
	b = append(b, `","type":"external_payments","attributes":{"payment_source_token":"`...)
	b = append(b, tokenPrefix...)
	b = append(b, id...)
	b = append(b, `"},"relationships":{"order":{"data":{"type":"orders","id":"ord_`...)
	b = append(b, id...)
	b = append(b, `"}}}},"included":[{"id":"ord_`...)
	b = append(b, id...)
	b = append(b, `","type":"orders","attributes":{"number":"`...)
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","currency_code":"EUR","total_amount_with_taxes_cents":12900,"customer_email":"ada@example.com"}}]}`...)
	return b
}

// captureBody captures the whole of the authorization token names.
func captureBody(run string, n uint64, token string) []byte {
	b := make([]byte, 0, 256)
	b = append(b, `{"data":{"id":"auth_`...)
	b = append(b, run...)
	b = append(b, '_')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, `","type":"authorizations","attributes":{"token":"`...)
	b = append(b, token...)
	b = append(b, `","currency_code":"EUR","amount_cents":12900,"capture_amount_cents":12900}}}`...)
	return b
}

// jsonField finds "name":"<value>" in a compact JSON answer (the handler's
// answers are compact and its values never contain quotes).
func jsonField(body []byte, name string) string {
	key := `"` + name + `":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

func (b *bench) post(ctx context.Context, path string, body []byte, sig string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(clSignatureHeader, sig)
	return b.do(req)
}

func (b *bench) get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	return b.do(req)
}

// do sends req and reads the whole answer, so the connection is reused.
func (b *bench) do(req *http.Request) (int, []byte, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, body, err
}

// callbackServer stands in for Commerce Layer's webhook endpoint: it checks
// each callback's signature and records when each action_id was called back.
type callbackServer struct {
	secret []byte
	url    string
	srv    *http.Server
	ln     net.Listener

	received  atomic.Int64 // every POST
	badSig    atomic.Int64
	malformed atomic.Int64
	failed    atomic.Int64 // success:false

	mu      sync.Mutex
	waiting map[string]*asyncEntry // by action_id
	e2e     []time.Duration        // 202 received → callback received
	first   time.Time
	last    time.Time
	matched int64
	early   int64 // callbacks that arrived before their 202 was read
	dupes   int64
}

type asyncEntry struct {
	accepted time.Time // the 202 was read by the client
	called   time.Time // the callback arrived
}

func startCallbackServer(secret []byte) (*callbackServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &callbackServer{secret: secret, ln: ln, waiting: make(map[string]*asyncEntry)}
	c.url = "http://" + ln.Addr().String() + "/commercelayer/webhook"
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *callbackServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
}

func (c *callbackServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	c.received.Add(1)
	want := clSign(c.secret, body)
	if !hmac.Equal([]byte(r.Header.Get(clSignatureHeader)), []byte(want)) {
		c.badSig.Add(1)
		// 200 all the same: a retry would only count again.
		w.WriteHeader(http.StatusOK)
		return
	}
	var cb struct {
		Success bool `json:"success"`
		Data    struct {
			ActionID string `json:"action_id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &cb) != nil || cb.Data.ActionID == "" {
		c.malformed.Add(1)
		w.WriteHeader(http.StatusOK)
		return
	}
	if !cb.Success {
		c.failed.Add(1)
	}
	c.called(cb.Data.ActionID, arrived)
	w.WriteHeader(http.StatusOK)
}

// accepted records that actionID was answered 202 at t.
func (c *callbackServer) accepted(actionID string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.waiting[actionID]
	if e == nil {
		c.waiting[actionID] = &asyncEntry{accepted: t}
		return
	}
	e.accepted = t
	if !e.called.IsZero() { // the callback came first
		c.early++
		c.e2e = append(c.e2e, e.called.Sub(t))
		c.matched++
	}
}

func (c *callbackServer) called(actionID string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first.IsZero() {
		c.first = t
	}
	c.last = t
	e := c.waiting[actionID]
	if e == nil {
		c.waiting[actionID] = &asyncEntry{called: t}
		return
	}
	if !e.called.IsZero() {
		c.dupes++ // at-least-once delivery: a duplicate is not an error
		return
	}
	e.called = t
	if !e.accepted.IsZero() {
		c.e2e = append(c.e2e, t.Sub(e.accepted))
		c.matched++
	}
}

// outstanding counts 202s not called back yet.
func (c *callbackServer) outstanding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.waiting {
		if !e.accepted.IsZero() && e.called.IsZero() {
			n++
		}
	}
	return n
}

// errSamples keeps the first few error messages of each phase.
type errSamples struct {
	mu  sync.Mutex
	m   map[string][]string
	all map[string]int64
}

func newErrSamples() *errSamples {
	return &errSamples{m: make(map[string][]string), all: make(map[string]int64)}
}

func (e *errSamples) add(phase, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all[phase]++
	if len(e.m[phase]) < 5 {
		e.m[phase] = append(e.m[phase], msg)
	}
}

func (e *errSamples) first(phase string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.m[phase]; len(s) > 0 {
		return s[0]
	}
	return "(no error recorded)"
}

func (e *errSamples) samples(phase string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.m[phase]...)
}

// describe renders an unexpected outcome for the error samples.
func describe(what string, status int, body []byte, err error) string {
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return what + ": canceled"
		}
		return fmt.Sprintf("%s: %v", what, err)
	}
	if len(body) > 200 {
		body = body[:200]
	}
	return fmt.Sprintf("%s: HTTP %d %s", what, status, body)
}
