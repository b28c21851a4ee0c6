package handlers

import (
	"context"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/store"
)

type oneGateway struct{ g payment.Gateway }

func (o oneGateway) Gateway(name string) (payment.Gateway, bool) { return o.g, name == "default" }

// sandboxEngine is a real engine on a real store, with the sandbox as
// gateway "default".
func sandboxEngine(t *testing.T) (*store.Store, func(context.Context) (*payment.Engine, error)) {
	t.Helper()
	return sandboxEngineAround(t, nil)
}

// sandboxEngineAround is sandboxEngine with wrap(sandbox) as gateway
// "default" (the sandbox itself when wrap is nil).
func sandboxEngineAround(t *testing.T, wrap func(payment.Gateway) payment.Gateway) (*store.Store, func(context.Context) (*payment.Engine, error)) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sb, err := sandbox.New(sandbox.Config{AsyncDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var gw payment.Gateway = sb
	if wrap != nil {
		gw = wrap(sb)
	}
	e := payment.New(payment.Config{Store: st, Gateways: oneGateway{gw}})
	e.RegisterNotifier(PlatformCommerceLayer, CommerceLayerCallback)
	e.RegisterNotifier(PlatformMagento, MagentoNotification)
	return st, func(context.Context) (*payment.Engine, error) { return e, nil }
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
