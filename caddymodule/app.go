package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `paybridge` app: the payment store, the gateways (PSPs) and the
// background workers every paybridge handler of a config shares.
type App struct {
	// Storage is the Badger directory. Default: "paybridge" in Caddy's
	// data directory.
	Storage string `json:"storage,omitempty"`
	// ReconcileInterval is how often pending transactions are re-checked at
	// the PSP. Default: 2s.
	ReconcileInterval caddy.Duration `json:"reconcile_interval,omitempty"`
	// MaxAge is how long outbound deliveries and background retries go on
	// before giving up. Default: 72h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
	// RetryBackoffMin and RetryBackoffMax bound the backoff between
	// attempts of an outbound delivery (jittered, doubling). Defaults: 1s
	// and 10m.
	RetryBackoffMin caddy.Duration `json:"retry_backoff_min,omitempty"`
	RetryBackoffMax caddy.Duration `json:"retry_backoff_max,omitempty"`
	// GatewaysRaw are the payment gateways by name; each is a module of
	// namespace paybridge.gateways named by its "type".
	GatewaysRaw map[string]json.RawMessage `json:"gateways,omitempty" caddy:"namespace=paybridge.gateways inline_key=type"`
	// Events lists the endpoints that receive payment events.
	Events *EventsConfig `json:"events,omitempty"`

	gateways map[string]GatewayModule
	storage  string
	logger   *zap.Logger

	// commerceLayer is filled while the config is provisioned and only read
	// once it has started, so it needs no lock.
	commerceLayer map[string]*handlers.CommerceLayer
	openfront     map[string]*openfrontHandler
	magento       map[string]*magentoHandler
	listeners     []payment.Listener
	// stopRegistering ends this config's bus registrations in progress.
	stopRegistering context.CancelFunc
	endpoints       map[string]*EventEndpoint

	ready   chan struct{} // closed when Start has opened the store
	runtime *runtime
}

// GatewayModule is implemented by paybridge.gateways modules.
type GatewayModule interface {
	// PaymentGateway is the PSP client the engine calls.
	PaymentGateway() payment.Gateway
	// WebhookSecrets verify the PSP's signed webhooks (nil: none accepted).
	WebhookSecrets() [][]byte
	// PaymentPages returns the URL of the gateway's page where a customer
	// pays a checkout session, by payment id; nil when it has none.
	PaymentPages() func(paymentID string) string
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "paybridge",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision loads the gateways. It opens nothing: Caddy provisions a new
// config before stopping the old one, and `caddy validate` provisions in a
// second process, while Badger allows one open per directory.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	a.ready = make(chan struct{})
	a.commerceLayer = make(map[string]*handlers.CommerceLayer)
	a.openfront = make(map[string]*openfrontHandler)
	a.magento = make(map[string]*magentoHandler)
	a.storage = a.Storage
	if a.storage == "" {
		a.storage = filepath.Join(caddy.AppDataDir(), "paybridge")
	}
	abs, err := filepath.Abs(a.storage)
	if err != nil {
		return fmt.Errorf("storage %q: %v", a.storage, err)
	}
	a.storage = abs
	a.listeners, a.endpoints, err = a.Events.provision()
	if err != nil {
		return err
	}
	a.gateways = make(map[string]GatewayModule)
	if a.GatewaysRaw != nil {
		mods, err := ctx.LoadModule(a, "GatewaysRaw")
		if err != nil {
			return fmt.Errorf("loading gateways: %v", err)
		}
		for name, m := range mods.(map[string]any) {
			gm, ok := m.(GatewayModule)
			if !ok {
				return fmt.Errorf("gateway %q: module %T is not a payment gateway", name, m)
			}
			a.gateways[name] = gm
		}
	}
	return nil
}

// Validate checks the durations.
func (a *App) Validate() error {
	if a.ReconcileInterval < 0 || a.MaxAge < 0 || a.RetryBackoffMin < 0 || a.RetryBackoffMax < 0 {
		return fmt.Errorf("reconcile_interval, max_age and retry_backoff must not be negative")
	}
	if a.RetryBackoffMax > 0 && a.RetryBackoffMin > a.RetryBackoffMax {
		return fmt.Errorf("retry_backoff: the minimum %s is above the maximum %s",
			time.Duration(a.RetryBackoffMin), time.Duration(a.RetryBackoffMax))
	}
	return nil
}

// Start opens (or shares) the store and its workers and makes this config
// the one they serve.
func (a *App) Start() error {
	rt, err := acquireRuntime(a)
	if err != nil {
		return err
	}
	rt.serve(a)
	a.runtime = rt
	close(a.ready)
	// Registered in the background: a bus that is down must not keep
	// Caddy from serving.
	ctx, cancel := context.WithCancel(context.Background())
	a.stopRegistering = cancel
	for _, h := range a.magento {
		if h.register {
			go h.registerLoop(ctx)
		}
	}
	return nil
}

// Stop releases this config's hold on the store; it closes when the last
// config using it is gone.
func (a *App) Stop() error {
	if a.stopRegistering != nil {
		a.stopRegistering()
	}
	if a.runtime == nil {
		return nil
	}
	a.runtime.leave(a)
	return releaseRuntime(a.storage)
}

// hold waits (within ctx) for Start, since Caddy starts apps in no fixed
// order and the HTTP server may take a request first, then keeps the store
// open until release is called. ok is false when the store is not available.
func (a *App) hold(ctx context.Context) (release func(), ok bool) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case <-a.ready:
	case <-ctx.Done():
		return func() {}, false
	}
	if !a.runtime.enter() {
		return func() {}, false
	}
	return a.runtime.exit, true
}

// engine is what platform handlers call; the request already holds the
// store (see Handler.ServeHTTP).
func (a *App) engine(ctx context.Context) (*payment.Engine, error) {
	select {
	case <-a.ready:
		return a.runtime.engine, nil
	case <-ctx.Done():
		return nil, payment.ErrNotReady
	}
}

// Gateway implements payment.GatewayResolver.
func (a *App) Gateway(name string) (payment.Gateway, bool) {
	g, ok := a.gateways[name]
	if !ok {
		return nil, false
	}
	return g.PaymentGateway(), true
}

func (a *App) gatewayModule(name string) (GatewayModule, bool) {
	g, ok := a.gateways[name]
	return g, ok
}

// defaultGateway is the gateway a handler uses when it names none: the only
// one defined.
func (a *App) defaultGateway() (string, error) {
	switch len(a.gateways) {
	case 0:
		return "", fmt.Errorf("no gateway is defined: add `gateway <name> sandbox` (or another type) to the paybridge global option")
	case 1:
		for name := range a.gateways {
			return name, nil
		}
	}
	return "", fmt.Errorf("several gateways are defined: name one with `gateway <name>`")
}

// resolveGateway returns the gateway a handler names, or the only one
// defined when it names none.
func (a *App) resolveGateway(name string) (string, error) {
	if name == "" {
		return a.defaultGateway()
	}
	if _, ok := a.Gateway(name); !ok {
		return "", fmt.Errorf("gateway %q is not defined in the paybridge global option", name)
	}
	return name, nil
}

// registerCommerceLayer makes h the destination of callbacks addressed to
// its name. Names must be unique in a config.
func (a *App) registerCommerceLayer(h *handlers.CommerceLayer) error {
	if err := a.uniqueName(h.Name); err != nil {
		return err
	}
	a.commerceLayer[h.Name] = h
	return nil
}

// registerOpenfront makes h the destination of the events relayed for its
// payments.
func (a *App) registerOpenfront(h *openfrontHandler) error {
	if err := a.uniqueName(h.Name); err != nil {
		return err
	}
	a.openfront[h.Name] = h
	if h.relay != nil {
		a.listeners = append(a.listeners, h.listener())
	}
	return nil
}

// registerMagento makes h the destination of notifications addressed to
// its name.
func (a *App) registerMagento(h *magentoHandler) error {
	if err := a.uniqueName(h.Name); err != nil {
		return err
	}
	a.magento[h.Name] = h
	return nil
}

// uniqueName refuses a second platform handler of one name: a payment
// belongs to its handler by name, and so does its outbound work.
func (a *App) uniqueName(name string) error {
	_, cl := a.commerceLayer[name]
	_, of := a.openfront[name]
	_, mg := a.magento[name]
	if cl || of || mg {
		return fmt.Errorf("two paybridge platform handlers are named %q: give each its own name", name)
	}
	return nil
}

func (a *App) commerceLayerHandler(name string) (*handlers.CommerceLayer, bool) {
	h, ok := a.commerceLayer[name]
	return h, ok
}

func (a *App) interval() time.Duration { return time.Duration(a.ReconcileInterval) }
func (a *App) maxAge() time.Duration   { return time.Duration(a.MaxAge) }

// maxAgeOrDefault is max_age with the engine's default (72h) filled in.
func (a *App) maxAgeOrDefault() time.Duration {
	if a.MaxAge > 0 {
		return time.Duration(a.MaxAge)
	}
	return 72 * time.Hour
}

var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
	_ caddy.Validator   = (*App)(nil)
)

// live returns the running paybridge app of the active config, for the
// admin API (rebuilt on every reload, so it must look the app up per
// request) and the metrics gauges.
func live() (*App, *runtime, bool) {
	v, err := caddy.ActiveContext().AppIfConfigured("paybridge")
	if err != nil || v == nil {
		return nil, nil, false
	}
	a, ok := v.(*App)
	if !ok {
		return nil, nil, false
	}
	select {
	case <-a.ready:
		return a, a.runtime, true
	default:
		return nil, nil, false
	}
}
