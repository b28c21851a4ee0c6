package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/delivery"
	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
)

// OpenfrontConfig configures an Openfront custom HTTP payment provider: the
// six *Function URLs of the provider point at this handler's routes.
type OpenfrontConfig struct {
	// Name identifies this handler (one per Openfront store); relayed
	// events find their destination by it. Default: openfront.
	Name string `json:"name,omitempty"`
	// Gateway is the gateway to use; may be left out when only one is defined.
	Gateway string `json:"gateway,omitempty"`
	// APIKeys: every call must carry one of them as the provider's
	// credentials.apiKey (or as Authorization: Bearer). Placeholders are
	// replaced; empty values are dropped; at least one must be left.
	APIKeys []string `json:"api_keys,omitempty"`
	// DashboardURL is what generate-payment-link answers; {payment_id} is
	// replaced by paybridge. Default: the gateway's payment page.
	DashboardURL string `json:"dashboard_url,omitempty"`
	// Relay forwards the PSP events of this handler's payments to
	// Openfront's handlePaymentProviderWebhook mutation.
	Relay *OpenfrontRelayConfig `json:"relay,omitempty"`
	// MaxBodySize bounds request bodies, in bytes. Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
	// Deadline bounds the synchronous PSP call. Default: 4s.
	Deadline caddy.Duration `json:"deadline,omitempty"`
}

// OpenfrontRelayConfig is where Openfront's GraphQL API is.
type OpenfrontRelayConfig struct {
	// GraphQLURL, e.g. https://shop.example.com/api/graphql. Required.
	GraphQLURL string `json:"graphql_url,omitempty"`
	// ProviderID is the Openfront PaymentProvider's id (not its code). Required.
	ProviderID string `json:"provider_id,omitempty"`
	// Headers are added to every relay request (placeholders replaced),
	// e.g. an Authorization the Openfront deployment requires.
	Headers map[string]string `json:"headers,omitempty"`
}

// openfrontHandler is a provisioned Openfront handler and its relay.
type openfrontHandler struct {
	*handlers.Openfront
	relay *handlers.OpenfrontRelay
}

func (c *OpenfrontConfig) build(ctx caddy.Context, app *App) (*openfrontHandler, error) {
	repl := caddy.NewReplacer()
	name := c.Name
	if name == "" {
		name = handlers.PlatformOpenfront
	}
	keys := replacedSecrets(repl, c.APIKeys)
	if len(keys) == 0 {
		return nil, fmt.Errorf("no api_key is set (empty values, such as an unset {env.X}, are dropped); Openfront signs nothing, so the API key is its only proof")
	}
	gateway, err := app.resolveGateway(c.Gateway)
	if err != nil {
		return nil, err
	}
	mod, ok := app.gatewayModule(gateway)
	if !ok {
		return nil, fmt.Errorf("gateway %q is not defined in the paybridge global option", gateway)
	}
	pages := mod.PaymentPages()
	if pages == nil {
		return nil, fmt.Errorf("gateway %q has no payment page for Openfront's customers: set its public_url (where `paybridge gateway %s` is served)", gateway, gateway)
	}
	// {payment_id} is ours: Caddy's replacer would blank it, so only
	// {env.*} placeholders are replaced, and it is protected meanwhile.
	dashboard := strings.ReplaceAll(c.DashboardURL, "{payment_id}", "\x00")
	dashboard = strings.ReplaceAll(repl.ReplaceAll(dashboard, ""), "\x00", "{payment_id}")
	if c.MaxBodySize < 0 || c.Deadline < 0 {
		return nil, fmt.Errorf("max_body_size and deadline must not be negative")
	}
	h := &openfrontHandler{Openfront: &handlers.Openfront{
		Name:           name,
		Gateway:        gateway,
		APIKeys:        keys,
		DashboardURL:   dashboard,
		PaymentPage:    pages,
		WebhookSecrets: mod.WebhookSecrets(),
		MaxBodySize:    c.MaxBodySize,
		// Openfront has no circuit breaker to protect and ignores a 202's
		// meaning: an unreachable PSP is a 502 it can retry, never a
		// pending capture it would not hear the end of.
		Policy: payment.Policy{Deadline: time.Duration(c.Deadline)},
		Engine: app.engine,
		Logger: ctx.Logger(),
	}}
	if c.Relay != nil {
		relay, err := c.Relay.build(repl)
		if err != nil {
			return nil, fmt.Errorf("relay: %v", err)
		}
		if len(mod.WebhookSecrets()) == 0 {
			return nil, fmt.Errorf("relay: gateway %q has no webhook_secret to sign relayed events with", gateway)
		}
		h.relay = relay
	}
	return h, nil
}

func (c *OpenfrontRelayConfig) build(repl *caddy.Replacer) (*handlers.OpenfrontRelay, error) {
	url := repl.ReplaceAll(c.GraphQLURL, "")
	if !httpURL(url) {
		return nil, fmt.Errorf("graphql_url must be an absolute http(s) URL, e.g. https://shop.example.com/api/graphql")
	}
	id := repl.ReplaceAll(c.ProviderID, "")
	if id == "" {
		return nil, fmt.Errorf("provider_id is required: the id of Openfront's PaymentProvider")
	}
	header := http.Header{}
	for k, v := range c.Headers {
		header.Set(k, repl.ReplaceAll(v, ""))
	}
	return &handlers.OpenfrontRelay{GraphQLURL: url, ProviderID: id, Header: header}, nil
}

// relayKind is the outbox Kind of relayed Openfront events.
const relayKind = "openfront-relay"

// listener is the relay as the engine sees it: this handler's payments'
// relayed event types, queued for it by name.
func (h *openfrontHandler) listener() payment.Listener {
	return payment.Listener{Name: h.Name, Kind: relayKind, Handler: h.Name, Types: handlers.RelayedEventTypes()}
}

func (h *openfrontHandler) destination(m payment.Message) (delivery.Destination, bool) {
	if h.relay == nil {
		return delivery.Destination{}, false
	}
	url, header, body, err := h.RelayDestination(h.relay, m.Body, time.Now())
	if err != nil {
		h.Logger.Error("openfront relay: cannot render a queued event", zap.Error(err))
		return delivery.Destination{}, false
	}
	return delivery.Destination{URL: url, Header: header, Body: body, Check: handlers.CheckGraphQL}, true
}

func parseOpenfront(d *caddyfile.Dispenser) (*OpenfrontConfig, error) {
	c := new(OpenfrontConfig)
	startLine, startFile := d.Line(), d.File()
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "name", "gateway", "dashboard_url":
			if err := stringOption(d, map[string]*string{"name": &c.Name, "gateway": &c.Gateway, "dashboard_url": &c.DashboardURL}); err != nil {
				return nil, err
			}
		case "api_key":
			values, err := listArg(d)
			if err != nil {
				return nil, err
			}
			c.APIKeys = append(c.APIKeys, values...)
		case "max_body_size":
			n, err := sizeArg(d)
			if err != nil {
				return nil, err
			}
			c.MaxBodySize = n
		case "deadline":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			c.Deadline = dur
		case "relay":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			r, err := parseOpenfrontRelay(d)
			if err != nil {
				return nil, err
			}
			c.Relay = r
		default:
			return nil, d.Errf("unknown openfront option %q", opt)
		}
	}
	if len(c.APIKeys) == 0 {
		return nil, fmt.Errorf("paybridge openfront: api_key is required, at %s:%d", startFile, startLine)
	}
	return c, nil
}

func parseOpenfrontRelay(d *caddyfile.Dispenser) (*OpenfrontRelayConfig, error) {
	r := &OpenfrontRelayConfig{}
	line := d.Line()
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "graphql_url", "provider_id":
			if err := stringOption(d, map[string]*string{"graphql_url": &r.GraphQLURL, "provider_id": &r.ProviderID}); err != nil {
				return nil, err
			}
		case "header":
			var k, v string
			if !d.Args(&k, &v) || d.NextArg() {
				return nil, d.Errf("usage: header <name> <value>")
			}
			if r.Headers == nil {
				r.Headers = map[string]string{}
			}
			r.Headers[k] = v
		default:
			return nil, d.Errf("unknown relay option %q", opt)
		}
	}
	if r.GraphQLURL == "" || r.ProviderID == "" {
		return nil, fmt.Errorf("paybridge openfront relay: graphql_url and provider_id are required, at %s:%d", d.File(), line)
	}
	return r, nil
}
