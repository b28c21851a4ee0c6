package caddymodule

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptCaddyfile adapts a Caddyfile as `caddy adapt` does.
func adaptCaddyfile(t *testing.T, caddyfile string) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("no caddyfile adapter")
	}
	out, warnings, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Logf("adapt warning: %s", w.String())
	}
	return out
}

// validateJSON provisions (never starts) a JSON config, as `caddy validate`.
func validateJSON(cfgJSON []byte) error {
	var cfg caddy.Config
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return err
	}
	return caddy.Validate(&cfg)
}

// paybridgeHandlers digs every paybridge handler out of adapted JSON.
func paybridgeHandlers(t *testing.T, v any) []map[string]any {
	t.Helper()
	return findHandlers(v)
}

func TestAdaptCaddyfile(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("testdata", "adapt.Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	out := adaptCaddyfile(t, string(src))
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	rawApp, ok := apps["paybridge"]
	if !ok {
		t.Fatalf("no paybridge app in %s", out)
	}

	var app App
	b, _ := json.Marshal(rawApp)
	if err := json.Unmarshal(b, &app); err != nil {
		t.Fatal(err)
	}
	if app.Storage != "/var/lib/paybridge-test" || time.Duration(app.ReconcileInterval) != 2*time.Second || time.Duration(app.MaxAge) != 48*time.Hour {
		t.Errorf("app %+v", app)
	}
	var gw map[string]any
	if err := json.Unmarshal(app.GatewaysRaw["default"], &gw); err != nil {
		t.Fatalf("gateway default: %v (%s)", err, b)
	}
	wantGW := map[string]any{
		"type": "sandbox", "async_delay": float64(2 * time.Second), "outage": float64(10 * time.Second),
		"public_url": "http://localhost:9080/psp/default", "webhook_secrets": []any{"{env.SANDBOX_WEBHOOK_SECRET}"},
		"ledger": "/tmp/paybridge-ledger",
	}
	if !reflect.DeepEqual(gw, wantGW) {
		t.Errorf("gateway JSON %v, want %v", gw, wantGW)
	}

	hs := paybridgeHandlers(t, cfg)
	if len(hs) != 2 {
		t.Fatalf("%d paybridge handlers, want 2: %s", len(hs), out)
	}
	var cl, routes *Handler
	for _, raw := range hs {
		var h Handler
		b, _ := json.Marshal(raw)
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
		if h.CommerceLayer != nil {
			cl = &h
		} else {
			routes = &h
		}
	}
	if cl == nil || routes == nil {
		t.Fatalf("want one commercelayer and one gateway handler: %s", out)
	}
	want := CommerceLayerConfig{
		Name: "commercelayer", Gateway: "default",
		SharedSecrets: []string{"{env.CL_SHARED_SECRET}", "{env.CL_PREVIOUS_SECRET}"},
		CallbackURL:   "{env.CL_WEBHOOK_ENDPOINT_URL}",
		MaxBodySize:   2 << 20,
		Deadline:      caddy.Duration(3 * time.Second),
		AsyncTimeout:  caddy.Duration(10 * time.Minute),
		Unavailable:   "fail",
	}
	if !reflect.DeepEqual(*cl.CommerceLayer, want) {
		t.Errorf("commercelayer handler\n got %+v\nwant %+v", *cl.CommerceLayer, want)
	}
	if routes.Gateway != "default" {
		t.Errorf("gateway handler %+v", routes)
	}
}

func TestAdaptCaddyfileExample(t *testing.T) {
	t.Setenv("CL_SHARED_SECRET", "from-env")
	src, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	out := adaptCaddyfile(t, string(src))
	var cfg map[string]any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	apps, _ := cfg["apps"].(map[string]any)
	if _, ok := apps["paybridge"]; !ok {
		t.Fatalf("no paybridge app: %s", out)
	}
	hs := paybridgeHandlers(t, cfg)
	if len(hs) != 3 {
		t.Fatalf("%d paybridge handlers, want 3 (commercelayer, openfront, gateway): %s", len(hs), out)
	}
	found, openfront := false, false
	for _, h := range hs {
		if o, ok := h["openfront"].(map[string]any); ok {
			keys, _ := o["api_keys"].([]any)
			openfront = len(keys) == 1 && keys[0] == "demo-openfront-key" && o["relay"] != nil
		}
		if c, ok := h["commercelayer"].(map[string]any); ok {
			found = true
			secrets, _ := c["shared_secrets"].([]any)
			if len(secrets) == 0 || secrets[0] != "from-env" {
				t.Errorf("shared_secrets %v, want the environment's first", c["shared_secrets"])
			}
		}
	}
	if !found || !openfront {
		t.Errorf("no commercelayer handler, or no openfront handler with its demo key and relay: %s", out)
	}
}

func TestAdaptedJSONRunsLikeTheCaddyfile(t *testing.T) {
	dir := t.TempDir()
	cb := newRecorder(t, http.StatusOK)
	caddyfile := stdConfig(t, cfgParams{Storage: filepath.Join(dir, "store"), Secrets: []string{"json-secret"}, CallbackURL: cb.URL()})
	out := adaptCaddyfile(t, caddyfile)
	startCaddyJSON(t, string(out))
	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	assertOK(t, post(t, clPath+"authorize", body, "json-secret"), http.StatusOK)
	assertError(t, post(t, clPath+"authorize", body, "other"), http.StatusUnauthorized, "invalid_signature")
}

func startCaddyJSON(t *testing.T, cfg string) {
	t.Helper()
	ensureCaddy(t)
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", strings.NewReader(cfg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("loading JSON: HTTP %d", resp.StatusCode)
	}
	t.Cleanup(func() {
		if err := loadConfig(emptyConfig); err != nil {
			t.Errorf("unloading: %v", err)
		}
	})
}

// --- config errors -----------------------------------------------------------

// clConfig is a minimal config with one commercelayer handler whose block
// is block.
func clConfig(t *testing.T, global, block string) string {
	return `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	paybridge {
		storage ` + filepath.Join(t.TempDir(), "store") + `
		` + global + `
	}
}

http://localhost:9080 {
	handle /cl/* {
		paybridge commercelayer {
			` + block + `
		}
	}
}
`
}

const sandboxGW = "gateway default sandbox"

func TestConfigErrors(t *testing.T) {
	os.Unsetenv("PAYBRIDGE_TEST_UNSET_SECRET")
	cases := []struct {
		name  string
		cfg   func(t *testing.T) string
		wants []string
	}{
		{"no shared_secret left", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret {env.PAYBRIDGE_TEST_UNSET_SECRET}\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"shared_secret"}},
		{"no shared_secret at all", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "callback_url http://127.0.0.1:1/cb")
		}, []string{"shared_secret"}},
		{"shared_secret without a value", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"Caddyfile:14"}},
		{"second shared_secret without a value", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tshared_secret\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"Caddyfile:15"}},
		{"unknown subdirective", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb\n\t\t\tbogus_option 1")
		}, []string{"bogus_option", "Caddyfile:16"}},
		{"unknown global subdirective", func(t *testing.T) string {
			return clConfig(t, sandboxGW+"\n\t\tfrobnicate yes", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"frobnicate"}},
		{"unknown gateway type", func(t *testing.T) string {
			return clConfig(t, "gateway default nosuchpsp", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"nosuchpsp"}},
		{"unknown sandbox option", func(t *testing.T) string {
			return clConfig(t, "gateway default sandbox {\n\t\t\tsparkle 1\n\t\t}", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"sparkle"}},
		{"unavailable maybe", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb\n\t\t\tunavailable maybe")
		}, []string{"unavailable", "maybe"}},
		{"missing callback_url", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s")
		}, []string{"callback_url"}},
		{"callback_url not a URL", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url not-a-url")
		}, []string{"callback_url", "http(s)"}},
		{"callback_url without a scheme", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url cl.example/cb")
		}, []string{"callback_url", "http(s)"}},
		{"callback_url over ftp", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url ftp://cl.example/cb")
		}, []string{"callback_url", "http(s)"}},
		{"callback_url from an unset variable", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url {env.PAYBRIDGE_TEST_UNSET_SECRET}")
		}, []string{"callback_url"}},
		{"undefined gateway", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "gateway other\n\t\t\tshared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"other"}},
		{"no gateway defined", func(t *testing.T) string {
			return clConfig(t, "", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"gateway"}},
		{"two gateways, none named", func(t *testing.T) string {
			return clConfig(t, sandboxGW+"\n\t\tgateway second sandbox", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"gateway"}},
		{"bad deadline", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb\n\t\t\tdeadline soon")
		}, []string{"deadline"}},
		{"retry_backoff min above max", func(t *testing.T) string {
			return clConfig(t, sandboxGW+"\n\t\tretry_backoff 2s 1s", "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb")
		}, []string{"retry_backoff"}},
		{"bad max_body_size", func(t *testing.T) string {
			return clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb\n\t\t\tmax_body_size lots")
		}, []string{"max_body_size"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { assertLoadError(t, c.cfg(t), c.wants...) })
	}
}

func TestConfigValidates(t *testing.T) {
	// the same checks hold for `caddy validate` (provisioning only)
	cfg := adaptCaddyfile(t, clConfig(t, sandboxGW, "shared_secret {env.PAYBRIDGE_TEST_UNSET_SECRET}\n\t\t\tcallback_url http://127.0.0.1:1/cb"))
	if err := validateJSON(cfg); err == nil || !strings.Contains(err.Error(), "shared_secret") {
		t.Errorf("validate: %v, want an error about shared_secret", err)
	}
	cfg = adaptCaddyfile(t, clConfig(t, sandboxGW, "shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb"))
	if err := validateJSON(cfg); err != nil {
		t.Errorf("validate a good config: %v", err)
	}
}

// --- two handlers side by side ----------------------------------------------

func twoHandlers(storage, cbA, cbB, nameA, nameB string) string {
	return `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	paybridge {
		storage ` + storage + `
		reconcile_interval 50ms
		gateway default sandbox {
			async_delay 200ms
		}
	}
}

http://localhost:9080 {
	handle /a/* {
		paybridge commercelayer {
			name ` + nameA + `
			shared_secret secret-a
			callback_url ` + cbA + `
			deadline 300ms
		}
	}
	handle /b/* {
		paybridge commercelayer {
			name ` + nameB + `
			shared_secret secret-b secret-b-old
			callback_url ` + cbB + `
			deadline 300ms
		}
	}
}
`
}

func TestTwoHandlers(t *testing.T) {
	recA, recB := newRecorder(t, http.StatusOK), newRecorder(t, http.StatusOK)
	startCaddy(t, twoHandlers(filepath.Join(t.TempDir(), "store"), recA.URL(), recB.URL(), "org-a", "org-b"))

	body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
	assertOK(t, post(t, "/a/authorize", body, "secret-a"), http.StatusOK)
	assertOK(t, post(t, "/b/authorize", body, "secret-b"), http.StatusOK)
	assertOK(t, post(t, "/b/authorize", body, "secret-b-old"), http.StatusOK)
	assertError(t, post(t, "/a/authorize", body, "secret-b"), http.StatusUnauthorized, "invalid_signature")
	assertError(t, post(t, "/a/authorize", body, "secret-b-old"), http.StatusUnauthorized, "invalid_signature")
	assertError(t, post(t, "/b/authorize", body, "secret-a"), http.StatusUnauthorized, "invalid_signature")

	actA, _ := async202(t, post(t, "/a/authorize", mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 100)), "secret-a"))
	actB, _ := async202(t, post(t, "/b/authorize", mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 200)), "secret-b"))
	checkCallback(t, recA.waitAction(t, actA, 5*time.Second), "secret-a", actA, true)
	checkCallback(t, recB.waitAction(t, actB, 5*time.Second), "secret-b", actB, true)
	time.Sleep(200 * time.Millisecond)
	for _, c := range recA.all() {
		if actionOf(c.Body) != actA {
			t.Errorf("handler A's receiver got %s", c.Body)
		}
	}
	for _, c := range recB.all() {
		if actionOf(c.Body) != actB {
			t.Errorf("handler B's receiver got %s", c.Body)
		}
	}
}

func TestTwoHandlersDuplicateNames(t *testing.T) {
	assertLoadError(t, twoHandlers(filepath.Join(t.TempDir(), "store"), "http://127.0.0.1:1/a", "http://127.0.0.1:1/b", "same", "same"), "same")
}

// TestTwoHandlersTokensStayWithTheirHandler: a transaction token one
// handler (one Commerce Layer organization) issued, presented to another,
// must either be unknown there (404 payment_not_found) or, if accepted,
// be answered by a callback to the handler that accepted it. It must
// never be accepted with a 202 whose callback then goes to the other
// organization's URL, signed with its secret.
func TestTwoHandlersTokensStayWithTheirHandler(t *testing.T) {
	recA, recB := newRecorder(t, http.StatusOK), newRecorder(t, http.StatusOK)
	startCaddy(t, twoHandlers(filepath.Join(t.TempDir(), "store"), recA.URL(), recB.URL(), "org-a", "org-b"))
	actA, authA := async202(t, post(t, "/a/authorize", mustJSON(t, authorizeDoc("ep_"+uid(), "tok_async_"+uid(), 100)), "secret-a"))
	recA.waitAction(t, actA, 5*time.Second)

	r := post(t, "/b/capture", mustJSON(t, captureDoc("au_"+uid(), authA, 100, 100, 100)), "secret-b")
	switch r.Status {
	case http.StatusNotFound:
		assertError(t, r, http.StatusNotFound, "payment_not_found")
		return
	case http.StatusAccepted:
	default:
		t.Fatalf("capture via handler B of handler A's token: %s", r)
	}
	actB, _ := async202(t, r)
	waitUntil(3*time.Second, func() bool {
		for _, c := range append(recA.delivered(), recB.delivered()...) {
			if actionOf(c.Body) == actB {
				return true
			}
		}
		return false
	})
	for _, c := range recA.all() {
		if actionOf(c.Body) == actB {
			t.Errorf("handler B answered 202 with action %s, but its callback went to handler A's callback_url (signed with A's secret): %s", actB, c.Body)
		}
	}
	found := false
	for _, c := range recB.delivered() {
		if actionOf(c.Body) == actB {
			found = true
			checkCallback(t, c, "secret-b", actB, true)
		}
	}
	if !found {
		t.Errorf("handler B answered 202 with action %s and never called back to its own callback_url", actB)
	}
}

// TestConfigMissingRequiredOptionNamesLine: DESIGN.md says "missing
// required options ... fail at config load, naming the line". A
// commercelayer block with no callback_url or no shared_secret directive
// at all can be caught while the Caddyfile is parsed.
func TestConfigMissingRequiredOptionNamesLine(t *testing.T) {
	t.Run("callback_url", func(t *testing.T) {
		assertLoadError(t, clConfig(t, sandboxGW, "shared_secret s"), "callback_url", "Caddyfile:")
	})
	t.Run("shared_secret", func(t *testing.T) {
		assertLoadError(t, clConfig(t, sandboxGW, "callback_url http://127.0.0.1:1/cb"), "shared_secret", "Caddyfile:")
	})
}

// webhook_secret takes several values, so the sandbox's secret can be
// rotated: the first signs, all verify. A JSON config written with the
// single webhook_secret field keeps working.
func TestSandboxWebhookSecretRotation(t *testing.T) {
	out := adaptCaddyfile(t, clConfig(t, "gateway default sandbox {\n\t\t\twebhook_secret new-secret old-secret\n\t\t}",
		"shared_secret s\n\t\t\tcallback_url http://127.0.0.1:1/cb"))
	var cfg struct {
		Apps struct {
			Paybridge App `json:"paybridge"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		raw  []byte
		want []string
	}{
		{"Caddyfile", cfg.Apps.Paybridge.GatewaysRaw["default"], []string{"new-secret", "old-secret"}},
		{"older JSON", []byte(`{"type":"sandbox","webhook_secret":"only-secret"}`), []string{"only-secret"}},
	} {
		var g SandboxGateway
		if err := json.Unmarshal(c.raw, &g); err != nil {
			t.Fatalf("%s: %v (%s)", c.name, err, c.raw)
		}
		if err := g.Provision(caddy.Context{}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for _, s := range g.WebhookSecrets() {
			got = append(got, string(s))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: secrets %q, want %q", c.name, got, c.want)
		}
		g.Cleanup()
	}
}
