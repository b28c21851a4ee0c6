package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// failingApp is an app that refuses to start: a config that holds it is
// refused after the apps started before it, paybridge among them, have run.
type failingApp struct{}

func (failingApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "paybridge_test_failing_app", New: func() caddy.Module { return new(failingApp) }}
}
func (failingApp) Start() error { return errors.New("this app refuses to start (test)") }
func (failingApp) Stop() error  { return nil }

func init() { caddy.RegisterModule(failingApp{}) }

func loadJSONConfig(cfg []byte) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+adminAddr+"/load", bytes.NewReader(cfg))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	httpClient.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

// A reload that Caddy refuses keeps the running config, and the running
// config must keep working: paybridge's part of the refused config may have
// started (Caddy starts apps in no fixed order) and then stopped, and the
// running config must serve again, not nothing.
func TestRefusedReloadLeavesRunningConfigWorking(t *testing.T) {
	cb := newRecorder(t, http.StatusOK)
	const secret = "reload-secret"
	cfg := stdConfig(t, cfgParams{Storage: filepath.Join(t.TempDir(), "store"), Secrets: []string{secret}, CallbackURL: cb.URL()})
	startCaddy(t, cfg)
	var refused map[string]any
	if err := json.Unmarshal(adaptCaddyfile(t, cfg), &refused); err != nil {
		t.Fatal(err)
	}
	refused["apps"].(map[string]any)["paybridge_test_failing_app"] = map[string]any{}
	refusedJSON, err := json.Marshal(refused)
	if err != nil {
		t.Fatal(err)
	}
	// Apps start in map order, which varies: try enough times that
	// paybridge starts before the failing app in some of them.
	for i := range 10 {
		if loadJSONConfig(refusedJSON) == nil {
			t.Fatal("the config with an app that refuses to start was loaded")
		}
		body := mustJSON(t, authorizeDoc("ep_"+uid(), "tok_visa_"+uid(), 1000))
		if r := post(t, clPath+"authorize", body, secret); r.Status != http.StatusOK {
			t.Fatalf("after refused reload %d, the running config answers %s, want 200", i+1, r)
		}
	}
}
