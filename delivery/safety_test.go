package delivery

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/paybridge/caddy-paybridge/payment"
)

func TestRedirectNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) })
	srv := server(t, mux.ServeHTTP)
	o := newFakeOutbox()
	start(t, testWorker(t, o, static(srv.URL+"/hook")))
	o.add(msg("p1", "{}"))

	waitFor(t, 2*time.Second, "two failed attempts", func() bool {
		live, _, _, _ := o.snapshot()
		return live[0].Attempts >= 2
	})
	live, _, _, _ := o.snapshot()
	if live[0].LastError != "HTTP 302" {
		t.Errorf("LastError = %q", live[0].LastError)
	}
	if elsewhere.Load() != 0 {
		t.Error("redirect was followed")
	}
}

func TestErrorsAndLogsCarryNoSecrets(t *testing.T) {
	gone := server(t, func(http.ResponseWriter, *http.Request) {})
	host := strings.TrimPrefix(gone.URL, "http://")
	gone.Close()

	core, logs := observer.New(zapcore.DebugLevel)
	o := newFakeOutbox()
	w := testWorker(t, o, func(payment.Message) (Destination, bool) {
		h := http.Header{"Authorization": {"Bearer secret-token"}}
		return Destination{URL: "http://user:secret-pw@" + host + "/hook?token=secret-q", Header: h}, true
	})
	w.Logger = zap.New(core)
	stop := start(t, w)
	o.add(msg("p1", `{"card":"secret-body"}`))

	waitFor(t, 2*time.Second, "failed attempt", func() bool {
		live, _, _, _ := o.snapshot()
		return live[0].Attempts >= 1
	})
	stop()
	live, _, _, _ := o.snapshot()
	if live[0].LastError != "connection refused" {
		t.Errorf("LastError = %q", live[0].LastError)
	}
	if logs.FilterMessage("delivery: attempt failed").Len() == 0 {
		t.Error("no warning logged for the failed attempt")
	}
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, "secret") || strings.Contains(line, host) {
			t.Errorf("log line leaks: %s", line)
		}
	}
}

func TestShutdownLeavesInFlightMessageUntouched(t *testing.T) {
	arrived := make(chan struct{}, 1)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		hold(r, nil)
	})
	o := newFakeOutbox()
	w := testWorker(t, o, static(srv.URL))
	var results atomic.Int32
	w.OnResult = func(payment.Message, bool, bool) { results.Add(1) }
	stop := start(t, w)
	o.add(msg("p1", "{}"))

	select {
	case <-arrived:
	case <-time.After(2 * time.Second):
		t.Fatal("request never arrived")
	}
	began := time.Now()
	stop()
	if d := time.Since(began); d > time.Second {
		t.Errorf("Run took %v to stop", d)
	}
	live, _, _, _ := o.snapshot()
	if len(live) != 1 || live[0].Attempts != 0 || results.Load() != 0 {
		t.Errorf("aborted send was recorded: %+v, %d results", live, results.Load())
	}
}
