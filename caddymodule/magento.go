package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/paybridge/caddy-paybridge/delivery"
	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
)

// MagentoConfig configures a Magento OMS custom payment integration over
// the Magento Integration Bus (MIB).
type MagentoConfig struct {
	// Name identifies this handler; queued notifications find their
	// destination by it. Default: magento.
	Name string `json:"name,omitempty"`
	// Gateway is the gateway to use; may be left out when only one is defined.
	Gateway string `json:"gateway,omitempty"`
	// EndpointName is the endpoint id agreed with Magento. Required.
	EndpointName string `json:"endpoint_name,omitempty"`
	// Secrets verify X-Signature on bus calls; the first is sent at
	// registration. Placeholders are replaced; empty values are dropped;
	// at least one must be left.
	Secrets []string `json:"secrets,omitempty"`
	// BusURL is the bus: registration is POSTed here, notifications go to
	// {bus_url}/delegate/oms. Required.
	BusURL string `json:"bus_url,omitempty"`
	// DelegateURL overrides where notifications go.
	DelegateURL string `json:"delegate_url,omitempty"`
	// OAuthTokenURL, ClientID and ClientSecret: the OAuth 2.0 client
	// credentials Magento issued. Required.
	OAuthTokenURL string `json:"oauth_token_url,omitempty"`
	ClientID      string `json:"client_id,omitempty"`
	ClientSecret  string `json:"client_secret,omitempty"`
	// PublicURL is where the bus reaches this handler, sent at registration.
	PublicURL string `json:"public_url,omitempty"`
	// Register makes the app register the endpoint when it starts (never
	// when it is only provisioned, as by `caddy validate`).
	Register bool `json:"register,omitempty"`
	// Deadline bounds how long a command waits for the PSP before it is
	// accepted and finished in the background. Default: 2s.
	Deadline caddy.Duration `json:"deadline,omitempty"`
	// MaxBodySize bounds request bodies, in bytes. Default: 1 MiB.
	MaxBodySize int64 `json:"max_body_size,omitempty"`
}

// magentoHandler is a provisioned Magento handler with its bus client.
type magentoHandler struct {
	*handlers.Magento
	bus      *busClient
	register bool
	logger   *zap.Logger

	mu           sync.Mutex
	registration *registration
}

// busClient is how paybridge calls the bus: registration and notifications.
type busClient struct {
	endpoint  string
	secret    []byte // sent at registration
	busURL    string
	delegate  string
	publicURL string
	auth      *busAuth
}

// registration is what the bus answered about our endpoint, for the admin API.
type registration struct {
	At       time.Time      `json:"at"`
	Endpoint map[string]any `json:"remote_endpoint,omitempty"`
	Error    string         `json:"error,omitempty"`
	Attempts int            `json:"attempts"`
}

func (c *MagentoConfig) build(ctx caddy.Context, app *App) (*magentoHandler, error) {
	name := c.Name
	if name == "" {
		name = handlers.PlatformMagento
	}
	bus, err := c.busClient()
	if err != nil {
		return nil, err
	}
	if c.Register && bus.publicURL == "" {
		return nil, fmt.Errorf("register needs public_url: the URL the bus forwards commands to")
	}
	gateway, err := app.resolveGateway(c.Gateway)
	if err != nil {
		return nil, err
	}
	if c.MaxBodySize < 0 || c.Deadline < 0 {
		return nil, fmt.Errorf("max_body_size and deadline must not be negative")
	}
	deadline := time.Duration(c.Deadline)
	if deadline == 0 {
		deadline = 2 * time.Second
	}
	return &magentoHandler{
		Magento: &handlers.Magento{
			Name: name, Gateway: gateway, Secrets: replacedSecrets(caddy.NewReplacer(), c.Secrets), MaxBodySize: c.MaxBodySize,
			// Transient PSP faults are retried until delivered: the only
			// bound is max_age, after which the *_failed notification goes.
			Policy: payment.Policy{Deadline: deadline, Async: true, AsyncTimeout: app.maxAgeOrDefault()},
			Engine: app.engine,
			Logger: ctx.Logger(),
		},
		bus: bus, register: c.Register, logger: ctx.Logger(),
	}, nil
}

// busClient checks and resolves (placeholders replaced) what calling the
// bus takes; `caddy paybridge mib-register` uses it without a running app.
func (c *MagentoConfig) busClient() (*busClient, error) {
	repl := caddy.NewReplacer()
	secrets := replacedSecrets(repl, c.Secrets)
	if len(secrets) == 0 {
		return nil, fmt.Errorf("no secret is set (empty values, such as an unset {env.X}, are dropped); bus calls are always signed")
	}
	str := func(v string) string { return strings.TrimSpace(repl.ReplaceAll(v, "")) }
	endpoint, bus, tokenURL := str(c.EndpointName), strings.TrimRight(str(c.BusURL), "/"), str(c.OAuthTokenURL)
	clientID, clientSecret := str(c.ClientID), str(c.ClientSecret)
	for _, req := range []struct{ opt, v string }{
		{"endpoint_name", endpoint}, {"bus_url", bus}, {"oauth_token_url", tokenURL},
		{"client_id", clientID}, {"client_secret", clientSecret},
	} {
		if req.v == "" {
			return nil, fmt.Errorf("%s is required (it may come from an unset {env.X})", req.opt)
		}
	}
	delegate := str(c.DelegateURL)
	if delegate == "" {
		delegate = bus + "/delegate/oms"
	}
	for _, u := range []struct{ opt, v string }{{"bus_url", bus}, {"delegate_url", delegate}, {"oauth_token_url", tokenURL}} {
		if !httpURL(u.v) {
			return nil, fmt.Errorf("%s must be an absolute http(s) URL", u.opt)
		}
	}
	return &busClient{
		endpoint: endpoint, secret: secrets[0], busURL: bus, delegate: delegate, publicURL: str(c.PublicURL),
		auth: newBusAuth(clientcredentials.Config{ClientID: clientID, ClientSecret: clientSecret, TokenURL: tokenURL}),
	}, nil
}

// busAuth holds the OAuth 2.0 client-credentials token for bus calls: cached
// until it expires, replaced when the bus refuses it.
type busAuth struct {
	cfg clientcredentials.Config
	mu  sync.Mutex
	ts  oauth2.TokenSource
}

// tokenClient bounds a token request: the token is fetched inside a
// delivery attempt, which a hanging token endpoint must not hold forever
// (x/oauth2 uses http.DefaultClient, with no timeout, unless told).
var tokenClient = &http.Client{Timeout: 10 * time.Second}

func newBusAuth(cfg clientcredentials.Config) *busAuth {
	b := &busAuth{cfg: cfg}
	b.ts = b.newSource()
	return b
}

func (b *busAuth) newSource() oauth2.TokenSource {
	return b.cfg.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, tokenClient))
}

// header returns an Authorization header with a current token.
func (b *busAuth) header() (http.Header, error) {
	b.mu.Lock()
	ts := b.ts
	b.mu.Unlock()
	tok, err := ts.Token()
	if err != nil {
		return nil, fmt.Errorf("OAuth token: %s", oauthProblem(err))
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok.AccessToken)
	return h, nil
}

// refresh drops the cached token and returns a header with a new one.
func (b *busAuth) refresh() (http.Header, error) {
	b.mu.Lock()
	b.ts = b.newSource()
	b.mu.Unlock()
	return b.header()
}

// oauthProblem names an OAuth failure without the token endpoint's body,
// which might echo credentials.
func oauthProblem(err error) string {
	if re, ok := err.(*oauth2.RetrieveError); ok && re.Response != nil {
		return fmt.Sprintf("token endpoint answered HTTP %d", re.Response.StatusCode)
	}
	return "token endpoint unreachable"
}

// destination sends a queued notification to OMS's delegate URL with a
// bearer token; a 401 gets one retry with a new token.
func (h *magentoHandler) destination(m payment.Message) (delivery.Destination, bool) {
	header, err := h.bus.auth.header()
	if err != nil {
		// Not sent without its token: the notification echoes the
		// command's payment, card and bank details included. The attempt
		// fails and is retried with backoff.
		h.logger.Warn("magento: no OAuth token for a notification; it waits", zap.String("handler", h.Name), zap.String("error", err.Error()))
		return delivery.Destination{NotNow: "no OAuth access token: " + err.Error()}, true
	}
	return delivery.Destination{URL: h.bus.delegate, Header: header, Reauthorize: h.bus.auth.refresh, Check: handlers.CheckJSONRPC}, true
}

// parseMagento reads `paybridge magento { ... }`.
func parseMagento(d *caddyfile.Dispenser) (*MagentoConfig, error) {
	c := new(MagentoConfig)
	startLine, startFile := d.Line(), d.File()
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "name", "gateway", "endpoint_name", "bus_url", "delegate_url", "oauth_token_url", "client_id", "client_secret", "public_url":
			if err := stringOption(d, map[string]*string{
				"name": &c.Name, "gateway": &c.Gateway, "endpoint_name": &c.EndpointName, "bus_url": &c.BusURL,
				"delegate_url": &c.DelegateURL, "oauth_token_url": &c.OAuthTokenURL, "client_id": &c.ClientID,
				"client_secret": &c.ClientSecret, "public_url": &c.PublicURL,
			}); err != nil {
				return nil, err
			}
		case "secret":
			values, err := listArg(d)
			if err != nil {
				return nil, err
			}
			c.Secrets = append(c.Secrets, values...)
		case "register":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			c.Register = true
		case "deadline":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			c.Deadline = dur
		case "max_body_size":
			n, err := sizeArg(d)
			if err != nil {
				return nil, err
			}
			c.MaxBodySize = n
		default:
			return nil, d.Errf("unknown magento option %q", opt)
		}
	}
	for _, req := range []struct{ opt, v string }{
		{"endpoint_name", c.EndpointName}, {"bus_url", c.BusURL}, {"oauth_token_url", c.OAuthTokenURL},
		{"client_id", c.ClientID}, {"client_secret", c.ClientSecret},
	} {
		if req.v == "" {
			return nil, fmt.Errorf("paybridge magento: %s is required, at %s:%d", req.opt, startFile, startLine)
		}
	}
	if len(c.Secrets) == 0 {
		return nil, fmt.Errorf("paybridge magento: secret is required, at %s:%d", startFile, startLine)
	}
	return c, nil
}
