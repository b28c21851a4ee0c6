package caddymodule

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/paybridge/caddy-paybridge/delivery"
	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/store"
)

// runtimes holds one open store, with its engine and workers, per absolute
// storage path. Overlapping configs (a reload starts the new one before it
// stops the old) share it, so Badger is opened once and never fights its own
// directory lock.
var runtimes = caddy.NewUsagePool()

// runtime is what lives as long as some config uses a storage directory.
type runtime struct {
	store  *store.Store
	engine *payment.Engine
	worker *delivery.Worker
	// cancel stops the background work (startBackground); nil while it
	// is not running. Guarded by startedMu.
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// current is the newest started config: gateways, handler names, URLs
	// and secrets are looked up in it at the moment they are used.
	current atomic.Pointer[App]
	// started are the configs started and not yet stopped, oldest first. A
	// reload that fails after this app started stops the new config, and
	// the one still running must become current again.
	startedMu sync.Mutex
	started   []*App

	// Requests in flight hold the store open: Caddy stops an old config
	// without waiting for its requests, and a request whose PSP call went
	// through must still record the outcome.
	mu      sync.Mutex
	closing bool
	active  sync.WaitGroup
}

// drainTimeout bounds how long closing the store waits for requests in
// flight; they are bounded by their PSP deadline (4s by default).
const drainTimeout = time.Minute

// enter registers a request in flight; false once the store is closing.
func (rt *runtime) enter() bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.closing {
		return false
	}
	rt.active.Add(1)
	return true
}

func (rt *runtime) exit() { rt.active.Done() }

func acquireRuntime(a *App) (*runtime, error) {
	v, _, err := runtimes.LoadOrNew(a.storage, func() (caddy.Destructor, error) {
		return openRuntime(a)
	})
	if err != nil {
		return nil, err
	}
	return v.(*runtime), nil
}

func releaseRuntime(dir string) error {
	_, err := runtimes.Delete(dir)
	return err
}

func openRuntime(a *App) (*runtime, error) {
	rt := &runtime{}
	st, err := store.Open(store.Options{Dir: a.storage, Logger: rt.liveLogger(a.logger, "store")})
	if err != nil {
		return nil, err
	}
	rt.store = st
	rt.engine = payment.New(payment.Config{
		Store:    st,
		Gateways: rt,
		Logger:   rt.liveLogger(a.logger, "engine"),
		Settings: rt.settings,
		Observer: metricsObserver{},
	})
	rt.engine.RegisterNotifier(handlers.PlatformCommerceLayer, handlers.CommerceLayerCallback)
	rt.engine.RegisterNotifier(handlers.PlatformMagento, handlers.MagentoNotification)
	rt.worker = &delivery.Worker{
		Outbox:   st,
		Resolve:  rt.resolve,
		Logger:   rt.liveLogger(a.logger, "delivery"),
		OnResult: observeDelivery,
		// Set when the store is opened: a reload that changes max_age or
		// retry_backoff applies to the worker after a restart.
		MaxAge:     a.maxAge(),
		MinBackoff: time.Duration(a.RetryBackoffMin),
		MaxBackoff: time.Duration(a.RetryBackoffMax),
	}
	return rt, nil
}

// startBackground starts the reconciler and the delivery worker, unless
// they run; the caller holds startedMu. They run only while a config is
// started: gateways, URLs and settings are looked up in the current config,
// and a reconcile pass without one would take the missing gateway for an
// unreachable PSP and back off (after a restart, a pending payment waited
// up to a minute for its next look) or give up on an overdue operation.
func (rt *runtime) startBackground() {
	if rt.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.cancel = cancel
	rt.wg.Add(2)
	go func() { defer rt.wg.Done(); rt.engine.Run(ctx) }()
	go func() { defer rt.wg.Done(); rt.worker.Run(ctx) }()
}

// stopBackground stops them without waiting; the caller holds startedMu.
func (rt *runtime) stopBackground() {
	if rt.cancel != nil {
		rt.cancel()
		rt.cancel = nil
	}
}

// Destruct stops the workers and closes the store, when the last config
// using it has stopped.
func (rt *runtime) Destruct() error {
	rt.mu.Lock()
	rt.closing = true
	rt.mu.Unlock()
	drained := make(chan struct{})
	go func() { rt.active.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainTimeout):
		if a := rt.current.Load(); a != nil {
			a.logger.Error("closing the payment store with requests still in flight")
		}
	}
	rt.startedMu.Lock()
	rt.stopBackground()
	rt.startedMu.Unlock()
	rt.wg.Wait()
	return rt.store.Close()
}

func (rt *runtime) serve(a *App) {
	rt.startedMu.Lock()
	rt.started = append(rt.started, a)
	rt.current.Store(a)
	rt.startBackground()
	rt.startedMu.Unlock()
	rt.engine.Kick()
	rt.worker.Kick()
}

// leave forgets a stopping config. The newest config still running becomes
// current: after a normal reload that is the new one already; after a
// reload that failed (Caddy stops the new config and keeps the old), it is
// the old one again.
func (rt *runtime) leave(a *App) {
	rt.startedMu.Lock()
	for i, s := range rt.started {
		if s == a {
			rt.started = append(rt.started[:i], rt.started[i+1:]...)
			break
		}
	}
	if n := len(rt.started); n > 0 {
		rt.current.Store(rt.started[n-1])
	} else {
		rt.current.Store(nil)
		rt.stopBackground()
	}
	rt.startedMu.Unlock()
	rt.engine.Kick()
	rt.worker.Kick()
}

// Gateway implements payment.GatewayResolver over the live config.
func (rt *runtime) Gateway(name string) (payment.Gateway, bool) {
	a := rt.current.Load()
	if a == nil {
		return nil, false
	}
	return a.Gateway(name)
}

func (rt *runtime) settings() payment.Settings {
	if a := rt.current.Load(); a != nil {
		return payment.Settings{ReconcileInterval: a.interval(), MaxAge: a.maxAge(), Listeners: a.listeners}
	}
	return payment.Settings{}
}

// resolve finds where a queued message goes in the live config. A message
// whose handler was removed waits (and shows in the outbox) until a config
// names it again or it ages out.
func (rt *runtime) resolve(m payment.Message) (delivery.Destination, bool) {
	a := rt.current.Load()
	if a == nil {
		return delivery.Destination{}, false
	}
	switch m.Kind {
	case handlers.PlatformCommerceLayer:
		h, ok := a.commerceLayerHandler(m.Target)
		if !ok {
			return delivery.Destination{}, false
		}
		url, header := h.CallbackDestination(m.Body)
		return delivery.Destination{URL: url, Header: header}, true
	case handlers.PlatformMagento:
		h, ok := a.magento[m.Target]
		if !ok {
			return delivery.Destination{}, false
		}
		return h.destination(m)
	case relayKind:
		h, ok := a.openfront[m.Target]
		if !ok {
			return delivery.Destination{}, false
		}
		return h.destination(m)
	case payment.EventKind:
		ep, ok := a.endpoints[m.Target]
		if !ok {
			return delivery.Destination{}, false
		}
		return ep.destination(m.Body), true
	}
	return delivery.Destination{}, false
}
