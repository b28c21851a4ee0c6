package caddymodule

// Tests of the operations API (admin.api.paybridge, on caddytest's admin
// endpoint localhost:2999) and of the CLI commands that call it.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/paybridge/caddy-paybridge/payment"
)

// adminClient does not keep connections: every config load may replace the
// admin server.
var adminClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// adminDo sends a request to the admin endpoint.
func adminDo(t testing.TB, method, path string) response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+adminAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// adminOK checks a 200 JSON answer and decodes it into v.
func adminOK(t testing.TB, r response, v any) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", r.Status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("answer does not decode into %T: %v: %s", v, err, r.Body)
	}
}

// adminRefused checks an error answer of Caddy's admin API: the status and
// {"error": "..."} mentioning want.
func adminRefused(t testing.TB, r response, status int, want string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d: %s", r.Status, status, r.Body)
		return
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == "" {
		t.Errorf("error answer is not {\"error\": ...}: %s", r.Body)
		return
	}
	if !strings.Contains(e.Error, want) {
		t.Errorf("error %q does not mention %q", e.Error, want)
	}
}

// listed is an outbox message as the API lists it.
type listed struct {
	Seq         uint64          `json:"seq"`
	Kind        string          `json:"kind"`
	Target      string          `json:"target"`
	PaymentID   string          `json:"payment_id"`
	Attempts    int             `json:"attempts"`
	NextAttempt *time.Time      `json:"next_attempt"`
	LastError   string          `json:"last_error"`
	CreatedAt   time.Time       `json:"created_at"`
	Dead        bool            `json:"dead"`
	Body        json.RawMessage `json:"body"`
}

var listedKeys = []string{"attempts", "body", "created_at", "dead", "kind", "last_error", "next_attempt", "payment_id", "seq", "target"}

// outbox lists state ("pending" or "dead") through the API, checking the
// shape of every entry.
func outbox(t testing.TB, state string) []listed {
	t.Helper()
	r := adminDo(t, http.MethodGet, "/paybridge/outbox?state="+state)
	var raw []map[string]json.RawMessage
	adminOK(t, r, &raw)
	out := make([]listed, 0, len(raw))
	for _, m := range raw {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		if !slices.Equal(ks, listedKeys) {
			t.Errorf("listed message keys %v, want %v", ks, listedKeys)
		}
		if len(m["body"]) == 0 || m["body"][0] != '{' {
			t.Errorf("body is not embedded as a JSON object: %s", m["body"])
		}
		var l listed
		b, _ := json.Marshal(m)
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatalf("listed message: %v: %s", err, b)
		}
		out = append(out, l)
	}
	return out
}

// findAction returns the listed callback for actionID.
func findAction(ms []listed, actionID string) (listed, bool) {
	for _, m := range ms {
		if actionOf(m.Body) == actionID {
			return m, true
		}
	}
	return listed{}, false
}

// waitDead waits until the callback of actionID is a dead letter.
func waitDead(t *testing.T, cb *recorder, actionID string) listed {
	t.Helper()
	var dead listed
	if !waitUntil(8*time.Second, func() bool {
		var ok bool
		dead, ok = findAction(outbox(t, "dead"), actionID)
		return ok
	}) {
		t.Fatalf("callback of %s not dead-lettered; receiver got:%s", actionID, cb.dump())
	}
	return dead
}

// deadLetterEnv starts Caddy with a receiver answering 500 and max_age 1s,
// so callbacks die within about a second.
func deadLetterEnv(t *testing.T, secret string) *recorder {
	t.Helper()
	cb := newRecorder(t, http.StatusInternalServerError)
	startCaddy(t, stdConfig(t, cfgParams{
		Storage: filepath.Join(t.TempDir(), "store"), Secrets: []string{secret}, CallbackURL: cb.URL(),
		Paybridge: "max_age 1s\n\t\tretry_backoff 50ms 100ms",
	}))
	return cb
}

// asyncAuthorize starts an asynchronous authorization and returns its
// action id.
func asyncAuthorize(t *testing.T, secret string) string {
	t.Helper()
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 1000))
	return str(t, assertOK(t, post(t, clPath+"authorize", body, secret), http.StatusAccepted), "action_id")
}

func TestAdminPayment(t *testing.T) {
	e := newEnv(t)
	src := "tok_visa_" + uid() // 21 characters
	token := e.authorize(src, 1000)

	var byToken payment.Payment
	r := adminDo(t, http.MethodGet, "/paybridge/payments/"+token)
	adminOK(t, r, &byToken)
	if bytes.Contains(r.Body, []byte(src)) || bytes.Contains(r.Body, []byte(src[4:len(src)-4])) {
		t.Errorf("the payment source token is shown: %s", r.Body)
	}
	if want := src[:4] + "…" + src[len(src)-4:]; byToken.SourceToken != want {
		t.Errorf("source_token %q, want masked %q", byToken.SourceToken, want)
	}
	if !strings.HasPrefix(byToken.ID, "pay_") || byToken.Status == "" || byToken.Amount != 1000 || byToken.Currency != "EUR" {
		t.Errorf("payment: %+v", byToken)
	}
	if len(byToken.Txs) != 1 || byToken.Txs[0].Token != token || byToken.Txs[0].Kind != payment.Authorize {
		t.Errorf("transactions: %s", r.Body)
	}
	if len(byToken.Events) == 0 || byToken.Events[0].Type == "" {
		t.Errorf("no events: %s", r.Body)
	}
	raw := decodeJSON(t, r.Body)
	for _, k := range []string{"transactions", "events", "source_token"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("payment JSON has no %q: %s", k, r.Body)
		}
	}

	// By its id, the same payment.
	var byID payment.Payment
	adminOK(t, adminDo(t, http.MethodGet, "/paybridge/payments/"+byToken.ID), &byID)
	if byID.ID != byToken.ID || byID.SourceToken != byToken.SourceToken || len(byID.Txs) != 1 {
		t.Errorf("by id %+v, by token %+v", byID, byToken)
	}

	// The stored payment keeps its token: the API masked a copy.
	_, rt, ok := live()
	if !ok {
		t.Fatal("no live paybridge app")
	}
	err := rt.store.View(context.Background(), func(tx payment.Tx) error {
		p, err := tx.Payment(byID.ID)
		if err == nil && p.SourceToken != src {
			t.Errorf("stored source token %q, want %q", p.SourceToken, src)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// And a capture still works with it.
	e.capture(token, 1000, 1000)

	// A short token shows nothing of itself.
	short := e.authorize("tok_x"+uid()[:3], 500)
	var p payment.Payment
	adminOK(t, adminDo(t, http.MethodGet, "/paybridge/payments/"+short), &p)
	if p.SourceToken != "…" {
		t.Errorf("short source token shown as %q, want …", p.SourceToken)
	}

	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/payments/pay_nope"), http.StatusNotFound, "pay_nope")
	adminRefused(t, adminDo(t, http.MethodPost, "/paybridge/payments/"+byID.ID), http.StatusMethodNotAllowed, "POST")
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/nothing"), http.StatusNotFound, "not found")
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/outbox?state=sent"), http.StatusBadRequest, "state")
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/outbox?limit=x"), http.StatusBadRequest, "limit")
	adminRefused(t, adminDo(t, http.MethodDelete, "/paybridge/outbox"), http.StatusMethodNotAllowed, "DELETE")
	adminRefused(t, adminDo(t, http.MethodPost, "/paybridge/outbox/abc/retry"), http.StatusBadRequest, "abc")
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/outbox/1/retry"), http.StatusMethodNotAllowed, "GET")
	adminRefused(t, adminDo(t, http.MethodPost, "/paybridge/outbox/987654321/retry"), http.StatusNotFound, "987654321")
	var empty []listed
	adminOK(t, adminDo(t, http.MethodGet, "/paybridge/outbox?limit=5000"), &empty)
}

func TestAdminNotRunning(t *testing.T) {
	ensureCaddy(t) // no paybridge app in the config
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/outbox"), http.StatusServiceUnavailable, "not running")
	adminRefused(t, adminDo(t, http.MethodGet, "/paybridge/payments/pay_x"), http.StatusServiceUnavailable, "not running")
	adminRefused(t, adminDo(t, http.MethodPost, "/paybridge/outbox/1/retry"), http.StatusServiceUnavailable, "not running")
}

func TestAdminReplayDeadLetter(t *testing.T) {
	const secret = "dead-secret"
	cb := deadLetterEnv(t, secret)
	action := asyncAuthorize(t, secret)

	dead := waitDead(t, cb, action)
	if !dead.Dead || dead.Attempts < 1 || dead.LastError == "" || dead.Kind != "commercelayer" || dead.Target != "cl" ||
		!strings.HasPrefix(dead.PaymentID, "pay_") || dead.Seq == 0 || dead.CreatedAt.IsZero() {
		t.Errorf("dead letter: %+v", dead)
	}
	if _, ok := findAction(outbox(t, "pending"), action); ok {
		t.Error("a dead letter is also listed as pending")
	}
	if _, ok := findAction(outbox(t, ""), action); ok {
		t.Error("the default listing (pending) shows a dead letter")
	}
	before := len(cb.delivered())
	if before != 0 {
		t.Fatalf("a receiver answering 500 had %d deliveries", before)
	}

	cb.status.Store(http.StatusOK)
	replayedAt := time.Now()
	var m listed
	adminOK(t, adminDo(t, http.MethodPost, fmt.Sprintf("/paybridge/outbox/%d/retry", dead.Seq)), &m)
	if m.Seq != dead.Seq || m.Dead || m.Attempts != 0 || m.LastError != "" || m.NextAttempt != nil ||
		m.CreatedAt.Before(replayedAt.Add(-time.Second)) || !bytes.Equal(m.Body, dead.Body) {
		t.Errorf("replayed message: %+v", m)
	}

	c := cb.waitAction(t, action, 3*time.Second)
	checkCallback(t, c, secret, action, true)
	if !waitUntil(3*time.Second, func() bool {
		_, isDead := findAction(outbox(t, "dead"), action)
		_, isPending := findAction(outbox(t, "pending"), action)
		return !isDead && !isPending
	}) {
		t.Error("the delivered message is still listed")
	}
	// Delivered: nothing is left to replay.
	adminRefused(t, adminDo(t, http.MethodPost, fmt.Sprintf("/paybridge/outbox/%d/retry", dead.Seq)), http.StatusNotFound, "neither queued nor dead")
}

// TestAdminRetryNow retries a queued callback that waits for its next
// attempt: it goes out at once instead of after the backoff.
func TestAdminRetryNow(t *testing.T) {
	const secret = "retry-secret"
	cb := newRecorder(t, http.StatusServiceUnavailable)
	startCaddy(t, stdConfig(t, cfgParams{
		Storage: filepath.Join(t.TempDir(), "store"), Secrets: []string{secret}, CallbackURL: cb.URL(),
		Paybridge: "retry_backoff 20s 20s",
	}))
	action := asyncAuthorize(t, secret)
	var waiting listed
	if !waitUntil(5*time.Second, func() bool {
		var ok bool
		waiting, ok = findAction(outbox(t, "pending"), action)
		return ok && waiting.Attempts >= 1 && waiting.NextAttempt != nil
	}) {
		t.Fatalf("callback not waiting for a retry: %+v; receiver got:%s", waiting, cb.dump())
	}
	if waiting.Dead || waiting.LastError == "" || time.Until(*waiting.NextAttempt) < 5*time.Second {
		t.Errorf("waiting message: %+v", waiting)
	}

	cb.status.Store(http.StatusOK)
	var m listed
	adminOK(t, adminDo(t, http.MethodPost, fmt.Sprintf("/paybridge/outbox/%d/retry", waiting.Seq)), &m)
	if m.Seq != waiting.Seq || m.NextAttempt != nil || m.Attempts != waiting.Attempts || !m.CreatedAt.Equal(waiting.CreatedAt) {
		t.Errorf("retried message %+v, want due now with its attempts and age kept (was %+v)", m, waiting)
	}
	checkCallback(t, cb.waitAction(t, action, 3*time.Second), secret, action, true)
}

// runCLI runs a paybridge subcommand as `caddy paybridge ...` would, with
// the flags set, and returns what it printed.
func runCLI(t *testing.T, c *cobra.Command, args []string, flags map[string]string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	for k, v := range flags {
		if err := c.Flags().Set(k, v); err != nil {
			t.Fatalf("--%s: %v", k, err)
		}
	}
	if err := c.ValidateArgs(args); err != nil {
		return "", err
	}
	err := c.RunE(c, args)
	return out.String(), err
}

func TestAdminCLI(t *testing.T) {
	const secret = "cli-secret"
	cb := deadLetterEnv(t, secret)
	action := asyncAuthorize(t, secret)
	addr := map[string]string{"address": adminAddr}

	var dead listed
	if !waitUntil(8*time.Second, func() bool {
		out, err := runCLI(t, outboxCommand(), nil, map[string]string{"address": adminAddr, "state": "dead"})
		if err != nil {
			t.Fatalf("outbox --state dead: %v", err)
		}
		var ms []listed
		if err := json.Unmarshal([]byte(out), &ms); err != nil {
			t.Fatalf("outbox printed no JSON array: %v: %q", err, out)
		}
		var ok bool
		dead, ok = findAction(ms, action)
		if ok && !strings.Contains(out, "\n  {\n    \"seq\"") {
			t.Errorf("outbox output is not indented JSON:\n%s", out)
		}
		return ok
	}) {
		t.Fatalf("callback of %s not listed as dead; receiver got:%s", action, cb.dump())
	}

	// The default state is pending, where the dead letter is not.
	out, err := runCLI(t, outboxCommand(), nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	var pending []listed
	if err := json.Unmarshal([]byte(out), &pending); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if _, ok := findAction(pending, action); ok {
		t.Errorf("default outbox listing shows the dead letter:\n%s", out)
	}

	cb.status.Store(http.StatusOK)
	out, err = runCLI(t, replayCommand(), []string{fmt.Sprint(dead.Seq)}, addr)
	if err != nil {
		t.Fatalf("replay %d: %v", dead.Seq, err)
	}
	var m listed
	if err := json.Unmarshal([]byte(out), &m); err != nil || m.Seq != dead.Seq || m.Dead || !strings.HasPrefix(out, "{\n  \"seq\"") {
		t.Errorf("replay printed %q (%v), want the message as indented JSON", out, err)
	}
	checkCallback(t, cb.waitAction(t, action, 3*time.Second), secret, action, true)

	// Refusals carry the API's message.
	_, err = runCLI(t, replayCommand(), []string{"987654321"}, addr)
	if err == nil || !strings.Contains(err.Error(), "HTTP 404") || !strings.Contains(err.Error(), "neither queued nor dead") {
		t.Errorf("replay of an unknown message: %v, want HTTP 404 with the API's message", err)
	}
	if _, err := runCLI(t, replayCommand(), []string{"x"}, addr); err == nil {
		t.Error("replay x: no error")
	}
	if _, err := runCLI(t, replayCommand(), nil, addr); err == nil {
		t.Error("replay without a seq: no error")
	}
	if _, err := runCLI(t, outboxCommand(), nil, map[string]string{"address": adminAddr, "state": "gone"}); err == nil {
		t.Error("outbox --state gone: no error")
	}
}

// The operations API masks the payment source token wherever it shows up:
// Magento's gateway key is also the authorization's reference and part of
// its PSP and idempotency keys. A queued notification's echo of the
// command's card and bank details is hidden too.
func TestAdminHidesSourceTokenAndBankDetails(t *testing.T) {
	e := newMibEnv(t, "")
	e.bus.refuse.Store(1 << 20) // the notification stays queued
	const key, iban = "tok_visa_secretsourcetoken1234", "DE89370400440532013000"
	p := mibPayment(key, "10.00", "EUR", "op-admin-1")
	p["method_details"] = map[string]any{"method": "sepa", "submethod": "sepa_direct_debit",
		"bank": map[string]any{"account_holder_name": "Ada Lovelace", "iban": iban}}
	e.accepted("capture", p)
	var queued listed
	if !waitUntil(5*time.Second, func() bool {
		for _, m := range outbox(t, "pending") {
			if strings.Contains(string(m.Body), "op-admin-1") {
				queued = m
				return true
			}
		}
		return false
	}) {
		t.Fatal("the capture's notification was not queued")
	}
	for _, secret := range []string{iban, key} {
		if strings.Contains(string(queued.Body), secret) {
			t.Errorf("the outbox shows %q: %s", secret, queued.Body)
		}
	}
	body := string(adminDo(t, http.MethodGet, "/paybridge/payments/"+queued.PaymentID).Body)
	if !strings.Contains(body, `"source_token":"tok_…1234"`) {
		t.Fatalf("source token not masked: %s", body)
	}
	if n := strings.Count(body, key); n > 0 {
		t.Errorf("the source token appears whole %d times: %s", n, body)
	}
}
