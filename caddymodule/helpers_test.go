package caddymodule

// Shared helpers of the Caddy integration tests: the Caddyfile template, a
// client that signs Commerce Layer requests, JSON:API body builders, a
// callback recorder and a ledger reader.
//
// caddytest runs one Caddy per process (admin on localhost:2999), so no test
// of this package may call t.Parallel().

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/paybridge/caddy-paybridge/internal/cltest"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/template"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
)

const (
	adminAddr = "localhost:2999" // caddytest's default admin port
	baseURL   = "http://localhost:9080"
	// The route prefixes of the standard config (see stdConfig).
	clPath    = "/cl/"      // unavailable async (the default)
	failPath  = "/clfail/"  // unavailable fail
	smallPath = "/clsmall/" // max_body_size 1KiB
)

// cfgParams fills the standard Caddyfile template.
type cfgParams struct {
	Storage     string
	Ledger      string   // sandbox ledger file; "" for none
	Secrets     []string // shared_secret values of every handler
	CallbackURL string
	Global      string // extra global options (e.g. a log directive)
	AsyncDelay  string // default 200ms
	Outage      string // default 500ms
	Deadline    string // default 300ms
	Paybridge   string // extra paybridge global options (e.g. retry_backoff)
}

var stdTemplate = template.Must(template.New("caddyfile").Funcs(template.FuncMap{
	"join": func(s []string) string { return strings.Join(s, " ") },
}).Parse(`{
	admin localhost:2999
	http_port 9080
	https_port 9443
	{{.Global}}
	paybridge {
		storage {{.Storage}}
		reconcile_interval 50ms
		{{.Paybridge}}
		gateway default sandbox {
			async_delay {{.AsyncDelay}}
			outage {{.Outage}}
			{{- if .Ledger}}
			ledger {{.Ledger}}
			{{- end}}
		}
	}
}

http://localhost:9080 {
	handle /cl/* {
		paybridge commercelayer {
			name cl
			shared_secret {{join .Secrets}}
			callback_url {{.CallbackURL}}
			deadline {{.Deadline}}
			async_timeout 2s
		}
	}
	handle /clfail/* {
		paybridge commercelayer {
			name clfail
			shared_secret {{join .Secrets}}
			callback_url {{.CallbackURL}}
			deadline {{.Deadline}}
			async_timeout 2s
			unavailable fail
		}
	}
	handle /clsmall/* {
		paybridge commercelayer {
			name clsmall
			shared_secret {{join .Secrets}}
			callback_url {{.CallbackURL}}
			deadline {{.Deadline}}
			max_body_size 1KiB
		}
	}
}
`))

func stdConfig(t testing.TB, p cfgParams) string {
	t.Helper()
	if p.AsyncDelay == "" {
		p.AsyncDelay = "200ms"
	}
	if p.Outage == "" {
		p.Outage = "500ms"
	}
	if p.Deadline == "" {
		p.Deadline = "300ms"
	}
	var b strings.Builder
	if err := stdTemplate.Execute(&b, p); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// emptyConfig keeps the admin endpoint where caddytest expects it and runs
// nothing else: loading it stops (and closes) paybridge.
const emptyConfig = "{\n\tadmin localhost:2999\n}\n"

// env is one test's running paybridge: its storage, ledger and callback
// receiver.
type env struct {
	t       *testing.T
	storage string
	ledger  string
	secret  string // the first shared secret: signs requests and callbacks
	cb      *recorder
	tester  *caddytest.Tester
}

// newEnv starts Caddy with the standard config, a fresh storage directory,
// a ledger and a callback receiver answering 200. Secrets default to
// "secret-one secret-two".
func newEnv(t *testing.T, secrets ...string) *env {
	t.Helper()
	if len(secrets) == 0 {
		secrets = []string{"secret-one", "secret-two"}
	}
	dir := t.TempDir()
	e := &env{
		t:       t,
		storage: filepath.Join(dir, "store"),
		ledger:  filepath.Join(dir, "ledger"),
		secret:  secrets[0],
		cb:      newRecorder(t, http.StatusOK),
	}
	e.tester = startCaddy(t, stdConfig(t, cfgParams{
		Storage: e.storage, Ledger: e.ledger, Secrets: secrets, CallbackURL: e.cb.URL(),
	}))
	return e
}

// startCaddy loads cfg (a Caddyfile) and, when the test ends, loads an
// empty config so that Badger and the ledger are closed before t.TempDir's
// cleanup removes their files (cleanups run last-in first-out).
func startCaddy(t *testing.T, cfg string) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t)
	tester.InitServer(cfg, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
	// the old server closes its idle connections; a POST on one of them
	// would fail with EOF (net/http does not replay POSTs)
	httpClient.CloseIdleConnections()
	t.Cleanup(func() {
		if err := loadConfig(emptyConfig); err != nil {
			t.Errorf("unloading the test config: %v", err)
		}
	})
	return tester
}

// loadConfig POSTs a Caddyfile to the admin endpoint's /load; the error
// holds the admin API's answer when the config was refused.
func loadConfig(caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	httpClient.CloseIdleConnections()
	return nil
}

// ensureCaddy makes sure caddytest's in-process Caddy runs (the first test
// of the process starts it) with only an admin endpoint.
func ensureCaddy(t *testing.T) {
	t.Helper()
	caddytest.NewTester(t).InitServer(emptyConfig, "caddyfile")
	if t.Failed() {
		t.FailNow()
	}
}

// assertLoadError loads cfg and expects it to be refused with an error
// containing every one of wants. Unlike caddytest.AssertLoadError it does
// not panic when the config unexpectedly loads.
func assertLoadError(t *testing.T, cfg string, wants ...string) {
	t.Helper()
	ensureCaddy(t)
	err := loadConfig(cfg)
	if err == nil {
		_ = loadConfig(emptyConfig)
		t.Errorf("config loaded, want an error containing %q", wants)
		return
	}
	t.Logf("refused as expected: %v", err)
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("load error does not mention %q:\n%v", w, err)
		}
	}
}

// --- requests -------------------------------------------------------------

var httpClient = &http.Client{
	Timeout: 20 * time.Second,
	Transport: &http.Transport{
		MaxIdleConns:        200,
		MaxIdleConnsPerHost: 200,
		IdleConnTimeout:     30 * time.Second,
	},
}

type response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Elapsed time.Duration
}

func (r response) String() string { return fmt.Sprintf("HTTP %d %s", r.Status, r.Body) }

// do sends a request; header values "" are left out.
func do(t testing.TB, method, path string, body []byte, header map[string]string) response {
	t.Helper()
	r, err := tryDo(method, path, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func tryDo(method, path string, body []byte, header map[string]string) (response, error) {
	return tryDoWith(httpClient, method, path, body, header)
}

func tryDoWith(client *http.Client, method, path string, body []byte, header map[string]string) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, baseURL+path, rd)
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.api+json")
	for k, v := range header {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b, Elapsed: time.Since(start)}, nil
}

// post sends body to path signed with secret.
func post(t testing.TB, path string, body []byte, secret string) response {
	t.Helper()
	return do(t, http.MethodPost, path, body, map[string]string{"X-CommerceLayer-Signature": clSign(secret, body)})
}

// send posts doc (marshalled) to clPath+action, signed with the env's secret.
func (e *env) send(action string, doc map[string]any) response {
	e.t.Helper()
	return post(e.t, clPath+action, mustJSON(e.t, doc), e.secret)
}

// --- answers --------------------------------------------------------------

func decodeJSON(t testing.TB, b []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, b)
	}
	return m
}

// assertError checks an error answer: its status, and the body shape
// {"success":false,["data":{...},]"error":{"code":code,"message":"..."}}.
func assertError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d (code %s): %s", r.Status, status, code, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := decodeJSON(t, r.Body)
	for k := range m {
		if k != "success" && k != "data" && k != "error" {
			t.Errorf("unexpected top-level key %q in %s", k, r.Body)
		}
	}
	if s, ok := m["success"].(bool); !ok || s {
		t.Errorf("success = %v, want false: %s", m["success"], r.Body)
	}
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object: %s", r.Body)
	}
	if e["code"] != code {
		t.Errorf("error.code = %v, want %s: %s", e["code"], code, r.Body)
	}
	if msg, ok := e["message"].(string); !ok || msg == "" {
		t.Errorf("error.message missing: %s", r.Body)
	}
	if len(e) != 2 {
		t.Errorf("error object has keys other than code and message: %s", r.Body)
	}
}

// assertOK checks a success answer with the given status and returns data.
func assertOK(t testing.TB, r response, status int) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	m := decodeJSON(t, r.Body)
	if m["success"] != true {
		t.Fatalf("success = %v, want true: %s", m["success"], r.Body)
	}
	if _, ok := m["error"]; ok {
		t.Errorf("a success has an error: %s", r.Body)
	}
	data, ok := m["data"].(map[string]any)
	if !ok {
		t.Fatalf("no data object: %s", r.Body)
	}
	return data
}

func str(t testing.TB, data map[string]any, key string) string {
	t.Helper()
	s, ok := data[key].(string)
	if !ok || s == "" {
		t.Fatalf("data.%s = %v, want a non-empty string (data %v)", key, data[key], data)
	}
	return s
}

func num(t testing.TB, data map[string]any, key string) int64 {
	t.Helper()
	n, ok := data[key].(json.Number)
	if !ok {
		t.Fatalf("data.%s = %v, want a number (data %v)", key, data[key], data)
	}
	v, err := n.Int64()
	if err != nil {
		t.Fatalf("data.%s = %v: %v", key, n, err)
	}
	return v
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// --- bodies ---------------------------------------------------------------

// uid is a short random suffix for ids and sandbox tokens.
func uid() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The Commerce Layer documents of internal/cltest, under this package's names.
var (
	authorizeDoc = cltest.AuthorizeDoc
	captureDoc   = cltest.CaptureDoc
	voidDoc      = cltest.VoidDoc
	clSign       = cltest.Sign
)

// tokenDoc is a customer token call.
func tokenDoc(id, sourceToken string) map[string]any {
	return authorizeDoc(id, sourceToken, 1000)
}

// refundDoc refunds refund cents of the capture captureToken (of captureAmount).
func refundDoc(id, captureToken string, captureAmount, refund, balance int64) map[string]any {
	return cltest.RefundDoc(id, "NR-"+id+"/T/001", captureToken, captureAmount, refund, balance)
}

// attrs returns doc's data.attributes, for tests to change.
func attrs(doc map[string]any) map[string]any {
	return doc["data"].(map[string]any)["attributes"].(map[string]any)
}

// orderAttrs returns the included order's attributes.
func orderAttrs(doc map[string]any) map[string]any {
	return doc["included"].([]any)[0].(map[string]any)["attributes"].(map[string]any)
}

// --- flows ----------------------------------------------------------------

// authorize authorizes amount with a fresh "anything else" token unless
// source is given, and returns the transaction token.
func (e *env) authorize(source string, amount int64) string {
	e.t.Helper()
	data := assertOK(e.t, e.send("authorize", authorizeDoc("ep_"+uid(), source, amount)), http.StatusOK)
	return str(e.t, data, "transaction_token")
}

// capture captures amount of authToken synchronously and returns the
// capture's transaction token.
func (e *env) capture(authToken string, authAmount, amount int64) string {
	e.t.Helper()
	data := assertOK(e.t, e.send("capture", captureDoc("au_"+uid(), authToken, authAmount, amount, authAmount)), http.StatusOK)
	if got := num(e.t, data, "amount_cents"); got != amount {
		e.t.Fatalf("captured %d, want %d", got, amount)
	}
	return str(e.t, data, "transaction_token")
}

// --- callbacks ------------------------------------------------------------

type callback struct {
	Path     string
	Header   http.Header
	Body     []byte
	At       time.Time
	Answered int
}

// recorder is a callback receiver on loopback: it records every request
// and answers with its current status.
type recorder struct {
	srv    *httptest.Server
	status atomic.Int32
	mu     sync.Mutex
	calls  []callback
}

func newRecorder(t *testing.T, status int) *recorder {
	t.Helper()
	r := &recorder{}
	r.status.Store(int32(status))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		st := int(r.status.Load())
		r.mu.Lock()
		r.calls = append(r.calls, callback{Path: req.URL.Path, Header: req.Header.Clone(), Body: body, At: time.Now(), Answered: st})
		r.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) URL() string { return r.srv.URL + "/cb" }

func (r *recorder) all() []callback {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]callback(nil), r.calls...)
}

// delivered returns the callbacks answered 2xx.
func (r *recorder) delivered() []callback {
	var out []callback
	for _, c := range r.all() {
		if c.Answered >= 200 && c.Answered <= 299 {
			out = append(out, c)
		}
	}
	return out
}

// waitAction waits for a delivered callback naming actionID.
func (r *recorder) waitAction(t testing.TB, actionID string, timeout time.Duration) callback {
	t.Helper()
	var found callback
	ok := waitUntil(timeout, func() bool {
		for _, c := range r.delivered() {
			if actionOf(c.Body) == actionID {
				found = c
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no callback for action %s within %s; got %d requests: %s", actionID, timeout, len(r.all()), r.dump())
	}
	return found
}

func (r *recorder) dump() string {
	var b strings.Builder
	for _, c := range r.all() {
		fmt.Fprintf(&b, "\n  %s -> %d %s", c.At.Format("15:04:05.000"), c.Answered, c.Body)
	}
	return b.String()
}

func actionOf(body []byte) string {
	var m struct {
		Data struct {
			ActionID string `json:"action_id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	return m.Data.ActionID
}

// signedBy returns the secret among secrets whose signature the callback
// carries, or "".
func signedBy(c callback, secrets []string) string {
	for _, s := range secrets {
		if hmac.Equal([]byte(c.Header.Get("X-CommerceLayer-Signature")), []byte(clSign(s, c.Body))) {
			return s
		}
	}
	return ""
}

// checkCallback verifies a callback: signed with secret over its exact
// bytes (computed here with crypto/hmac), sent as JSON, with the shape
// {"success":success,"data":{"action_id":actionID,"message":...,[error_code,error_detail]}}.
// It returns data.
func checkCallback(t testing.TB, c callback, secret, actionID string, success bool) map[string]any {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(c.Body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got := c.Header.Get("X-CommerceLayer-Signature"); got != want {
		t.Errorf("callback signature %q, want %q (HMAC-SHA256 of the received bytes with %q)", got, want, secret)
	}
	if ct := c.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("callback Content-Type %q", ct)
	}
	if c.Path != "/cb" {
		t.Errorf("callback went to %s", c.Path)
	}
	m := decodeJSON(t, c.Body)
	if got := keys(m); len(got) != 2 || got[0] != "data" || got[1] != "success" {
		t.Errorf("callback keys %v, want [data success]: %s", got, c.Body)
	}
	if m["success"] != success {
		t.Errorf("callback success = %v, want %v: %s", m["success"], success, c.Body)
	}
	data, ok := m["data"].(map[string]any)
	if !ok {
		t.Fatalf("callback without data: %s", c.Body)
	}
	if data["action_id"] != actionID {
		t.Errorf("callback action_id %v, want %s", data["action_id"], actionID)
	}
	if msg, ok := data["message"].(string); !ok || msg == "" {
		t.Errorf("callback without message: %s", c.Body)
	}
	allowed := map[string]bool{"action_id": true, "message": true}
	if !success {
		allowed["error_code"], allowed["error_detail"] = true, true
	}
	for k := range data {
		if !allowed[k] {
			t.Errorf("callback data has %q, which Commerce Layer does not accept in a callback: %s", k, c.Body)
		}
	}
	return data
}

// --- ledger and polling ---------------------------------------------------

// readLedger reads the sandbox ledger; a missing file is an empty ledger.
func readLedger(t testing.TB, path string) []sandbox.Entry {
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

// countOps counts ledger entries by operation.
func countOps(entries []sandbox.Entry) map[string]int {
	out := make(map[string]int)
	for _, e := range entries {
		out[e.Op]++
	}
	return out
}

// ledgerKeysUnique fails when one (operation, key) pair was executed twice:
// a double charge.
func ledgerKeysUnique(t testing.TB, entries []sandbox.Entry) {
	t.Helper()
	seen := make(map[string]bool)
	for _, e := range entries {
		k := e.Op + " " + e.Key
		if seen[k] {
			t.Errorf("ledger: %s executed twice", k)
		}
		seen[k] = true
	}
}

// waitUntil polls cond every 10ms until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
