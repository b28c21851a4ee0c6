package caddymodule

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves one platform contract, or a gateway's PSP-facing routes.
// Exactly one of its fields is set.
type Handler struct {
	// CommerceLayer serves Commerce Layer's external payment gateway calls.
	CommerceLayer *CommerceLayerConfig `json:"commercelayer,omitempty"`
	// Openfront serves an Openfront custom HTTP payment provider's calls.
	Openfront *OpenfrontConfig `json:"openfront,omitempty"`
	// Magento serves Magento OMS's payment commands from the integration bus.
	Magento *MagentoConfig `json:"magento,omitempty"`
	// Gateway names the gateway whose PSP-facing routes (its webhook) this
	// handler serves.
	Gateway string `json:"gateway,omitempty"`

	serve platformHandler
	app   *App
}

// platformHandler is what every handlers type is: an http.Handler that can
// also answer, in its caller's format, that paybridge is not ready.
type platformHandler interface {
	http.Handler
	ServeUnavailable(w http.ResponseWriter)
}

// CommerceLayerConfig configures a Commerce Layer external gateway endpoint.
type CommerceLayerConfig struct {
	// Name identifies this handler (one per Commerce Layer organization);
	// queued callbacks find their URL and secret by it. Default: commercelayer.
	Name string `json:"name,omitempty"`
	// Gateway is the gateway to use; may be left out when only one is defined.
	Gateway string `json:"gateway,omitempty"`
	// SharedSecrets are the external gateway's shared secrets: the first
	// signs callbacks, all verify requests (for rotation). Placeholders
	// such as {env.CL_SHARED_SECRET} are replaced; empty values are dropped;
	// at least one must be left.
	SharedSecrets []string `json:"shared_secrets,omitempty"`
	// CallbackURL is the gateway's webhook_endpoint_url at Commerce Layer,
	// where results of asynchronous operations are sent. Required.
	CallbackURL string `json:"callback_url,omitempty"`
	// MaxBodySize bounds request bodies, in bytes. Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// Deadline bounds the synchronous PSP call. Default: 4s.
	Deadline caddy.Duration `json:"deadline,omitempty"`
	// AsyncTimeout is how long operations answered 202 because the PSP was
	// unreachable keep being retried. Default: 15m.
	AsyncTimeout caddy.Duration `json:"async_timeout,omitempty"`
	// Unavailable is what a call gets when the PSP cannot be reached by the
	// deadline: "async" (default: 202, retried in the background, so a PSP
	// blip does not trip Commerce Layer's circuit breaker) or "fail" (502).
	Unavailable string `json:"unavailable,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.paybridge",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the platform handler and registers it with the app.
func (h *Handler) Provision(ctx caddy.Context) error {
	appIface, err := ctx.App("paybridge")
	if err != nil {
		return err
	}
	app := appIface.(*App)
	h.app = app
	set := 0
	for _, on := range []bool{h.CommerceLayer != nil, h.Openfront != nil, h.Magento != nil, h.Gateway != ""} {
		if on {
			set++
		}
	}
	if set > 1 {
		return fmt.Errorf("a paybridge handler serves one platform (commercelayer, openfront, magento) or a gateway's routes, not several")
	}
	switch {
	case h.Magento != nil:
		mg, err := h.Magento.build(ctx, app)
		if err != nil {
			return fmt.Errorf("magento: %v", err)
		}
		h.serve = mg.Magento
		return app.registerMagento(mg)
	case h.Openfront != nil:
		of, err := h.Openfront.build(ctx, app)
		if err != nil {
			return fmt.Errorf("openfront: %v", err)
		}
		h.serve = of.Openfront
		return app.registerOpenfront(of)
	case h.CommerceLayer != nil:
		cl, err := h.CommerceLayer.build(ctx, app)
		if err != nil {
			return fmt.Errorf("commercelayer: %v", err)
		}
		h.serve = cl
		return app.registerCommerceLayer(cl)
	case h.Gateway != "":
		mod, ok := app.gatewayModule(h.Gateway)
		if !ok {
			return fmt.Errorf("gateway %q is not defined in the paybridge global option", h.Gateway)
		}
		h.serve = &handlers.GatewayRoutes{
			Name:     h.Gateway,
			Secrets:  mod.WebhookSecrets(),
			Checkout: mod.PaymentPages() != nil,
			Engine:   app.engine,
			Logger:   ctx.Logger(),
		}
		return nil
	}
	return fmt.Errorf("a paybridge handler needs a platform (commercelayer, openfront, magento) or a gateway")
}

func (c *CommerceLayerConfig) build(ctx caddy.Context, app *App) (*handlers.CommerceLayer, error) {
	repl := caddy.NewReplacer()
	name := c.Name
	if name == "" {
		name = handlers.PlatformCommerceLayer
	}
	secrets := replacedSecrets(repl, c.SharedSecrets)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no shared_secret is set (empty values, such as an unset {env.X}, are dropped); paybridge has no unsigned mode")
	}
	callback := repl.ReplaceAll(c.CallbackURL, "")
	if callback == "" {
		return nil, fmt.Errorf("callback_url is required: the gateway's webhook endpoint URL at Commerce Layer, where asynchronous results go")
	}
	if !httpURL(callback) {
		return nil, fmt.Errorf("callback_url must be an absolute http(s) URL, e.g. https://core.commercelayer.io/...")
	}
	gateway, err := app.resolveGateway(c.Gateway)
	if err != nil {
		return nil, err
	}
	policy := payment.Policy{
		Deadline:     time.Duration(c.Deadline),
		AsyncTimeout: time.Duration(c.AsyncTimeout),
	}
	switch c.Unavailable {
	case "", "async":
		policy.Async = true
	case "fail":
	default:
		return nil, fmt.Errorf("unavailable must be async or fail, not %q", c.Unavailable)
	}
	if c.MaxBodySize < 0 || c.Deadline < 0 || c.AsyncTimeout < 0 {
		return nil, fmt.Errorf("max_body_size, deadline and async_timeout must not be negative")
	}
	return &handlers.CommerceLayer{
		Name:        name,
		Gateway:     gateway,
		Secrets:     secrets,
		CallbackURL: callback,
		MaxBodySize: c.MaxBodySize,
		Policy:      policy,
		Engine:      app.engine,
		Logger:      ctx.Logger(),
	}, nil
}

// ServeHTTP serves the request; a paybridge handler always answers it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	release, ok := h.app.hold(r.Context())
	defer release()
	if !ok {
		h.serve.ServeUnavailable(w)
		return nil
	}
	h.serve.ServeHTTP(w, r)
	return nil
}

var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
