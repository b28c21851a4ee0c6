package caddymodule

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/paybridge/caddy-paybridge/adapters/sandbox"
	"github.com/paybridge/caddy-paybridge/payment"
)

func init() {
	caddy.RegisterModule(SandboxGateway{})
}

// SandboxGateway is the embedded test PSP: the payment source token picks
// the outcome, like a PSP's test cards.
type SandboxGateway struct {
	// AsyncDelay is how long a pending operation stays pending. Default: 2s.
	AsyncDelay caddy.Duration `json:"async_delay,omitempty"`
	// Outage is how long tok_outage operations fail after their creation.
	// Default: 10s.
	Outage caddy.Duration `json:"outage,omitempty"`
	// PublicURL is where the gateway's own routes are reachable.
	PublicURL string `json:"public_url,omitempty"`
	// Secrets (webhook_secret in the Caddyfile) sign the sandbox's PSP
	// events and verify them where they come back (Openfront's
	// handle-webhook): the first signs, all verify, so a secret can be
	// rotated. Placeholders allowed.
	Secrets []string `json:"webhook_secrets,omitempty"`
	// WebhookSecret is a single webhook secret, as configs written before
	// webhook_secrets gave it; it goes after them.
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// Ledger, when set, is a file where the sandbox appends one fsynced
	// line per operation it executes, to prove nothing ran twice.
	Ledger string `json:"ledger,omitempty"`

	sandbox   *sandbox.Sandbox
	secrets   [][]byte
	publicURL string
}

// CaddyModule returns the Caddy module information.
func (SandboxGateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "paybridge.gateways.sandbox",
		New: func() caddy.Module { return new(SandboxGateway) },
	}
}

// Provision creates the sandbox. It holds no state, so a config reload that
// creates a second one beside the first is harmless.
func (g *SandboxGateway) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	g.secrets = replacedSecrets(repl, append(slices.Clone(g.Secrets), g.WebhookSecret))
	g.publicURL = strings.TrimRight(repl.ReplaceAll(g.PublicURL, ""), "/")
	s, err := sandbox.New(sandbox.Config{
		AsyncDelay: time.Duration(g.AsyncDelay),
		Outage:     time.Duration(g.Outage),
		Ledger:     repl.ReplaceAll(g.Ledger, ""),
	})
	if err != nil {
		return fmt.Errorf("sandbox: %v", err)
	}
	g.sandbox = s
	return nil
}

// Cleanup closes the ledger.
func (g *SandboxGateway) Cleanup() error {
	if g.sandbox == nil {
		return nil
	}
	return g.sandbox.Close()
}

// PaymentGateway implements GatewayModule.
func (g *SandboxGateway) PaymentGateway() payment.Gateway { return g.sandbox }

// WebhookSecrets implements GatewayModule.
func (g *SandboxGateway) WebhookSecrets() [][]byte { return g.secrets }

// PaymentPages implements GatewayModule: the sandbox's test checkout,
// served by `paybridge gateway <name>` under public_url.
func (g *SandboxGateway) PaymentPages() func(paymentID string) string {
	if g.publicURL == "" {
		return nil
	}
	return func(paymentID string) string { return g.publicURL + "/checkout/" + paymentID }
}

// UnmarshalCaddyfile parses the block of `gateway <name> sandbox { ... }`;
// the dispenser is positioned at "sandbox".
func (g *SandboxGateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if opt == "webhook_secret" {
			values, err := listArg(d)
			if err != nil {
				return err
			}
			g.Secrets = append(g.Secrets, values...)
			continue
		}
		var arg string
		if !d.Args(&arg) || d.NextArg() {
			return d.Errf("%s takes exactly one value", opt)
		}
		switch opt {
		case "async_delay", "outage":
			dur, err := caddy.ParseDuration(arg)
			if err != nil || dur < 0 {
				return d.Errf("%s: bad duration %q", opt, arg)
			}
			if opt == "async_delay" {
				g.AsyncDelay = caddy.Duration(dur)
			} else {
				g.Outage = caddy.Duration(dur)
			}
		case "public_url":
			if !strings.HasPrefix(arg, "http://") && !strings.HasPrefix(arg, "https://") && !strings.HasPrefix(arg, "{") {
				return d.Errf("public_url must be an http(s) URL")
			}
			g.PublicURL = arg
		case "ledger":
			g.Ledger = arg
		default:
			return d.Errf("unknown sandbox option %q", opt)
		}
	}
	return nil
}

var (
	_ caddy.Provisioner     = (*SandboxGateway)(nil)
	_ caddy.CleanerUpper    = (*SandboxGateway)(nil)
	_ caddyfile.Unmarshaler = (*SandboxGateway)(nil)
	_ GatewayModule         = (*SandboxGateway)(nil)
)
