package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/paybridge/caddy-paybridge/delivery"
	"github.com/paybridge/caddy-paybridge/payment"
	"github.com/paybridge/caddy-paybridge/signature"
)

// EventsConfig lists the endpoints that receive payment events.
type EventsConfig struct {
	Endpoints []*EventEndpoint `json:"endpoints,omitempty"`
}

// EventEndpoint is one listener of payment events.
type EventEndpoint struct {
	// Name identifies the endpoint: queued events find their URL and secret
	// by it, and metrics label by it. Default: "events-" and a digest of
	// the URL (stable when endpoints are reordered; never the URL itself).
	Name string `json:"name,omitempty"`
	// URL receives a POST per event. Placeholders are replaced.
	URL string `json:"url"`
	// Secrets sign with Paybridge-Signature (one v1 per secret, so both
	// verify during a rotation). Empty values are dropped; one must be left.
	Secrets []string `json:"secrets,omitempty"`
	// Types, when set, are the only event types sent.
	Types []string `json:"types,omitempty"`

	url     string
	secrets [][]byte
}

var eventTypes = map[string]bool{}

func init() {
	for _, t := range []payment.EventType{
		payment.PaymentAuthenticationStarted, payment.PaymentReceived, payment.PaymentAuthorized,
		payment.PaymentRefused, payment.PaymentCancelled, payment.PaymentCaptureStarted,
		payment.PaymentCaptured, payment.PaymentCaptureFailed, payment.PaymentRefunded,
		payment.PaymentRefundFailed,
	} {
		eventTypes[string(t)] = true
	}
}

// provision resolves placeholders and checks the endpoints.
func (c *EventsConfig) provision() ([]payment.Listener, map[string]*EventEndpoint, error) {
	if c == nil {
		return nil, nil, nil
	}
	repl := caddy.NewReplacer()
	byName := make(map[string]*EventEndpoint)
	var listeners []payment.Listener
	for i, ep := range c.Endpoints {
		ep.url = repl.ReplaceAll(ep.URL, "")
		if !httpURL(ep.url) {
			return nil, nil, fmt.Errorf("events endpoint %d: the URL must be an absolute http(s) URL", i+1)
		}
		var values []string
		for _, s := range ep.Secrets {
			values = append(values, repl.ReplaceAll(s, ""))
		}
		ep.secrets = signature.Secrets(values...)
		if len(ep.secrets) == 0 {
			return nil, nil, fmt.Errorf("events endpoint %d: no secret is set (empty values, such as an unset {env.X}, are dropped); events are always signed", i+1)
		}
		if ep.Name == "" {
			sum := sha256.Sum256([]byte(ep.url))
			ep.Name = "events-" + hex.EncodeToString(sum[:4])
		}
		if _, dup := byName[ep.Name]; dup {
			return nil, nil, fmt.Errorf("two events endpoints are named %q", ep.Name)
		}
		byName[ep.Name] = ep
		l := payment.Listener{Name: ep.Name}
		if len(ep.Types) > 0 {
			l.Types = make(map[payment.EventType]bool)
			for _, t := range ep.Types {
				if !eventTypes[t] {
					return nil, nil, fmt.Errorf("events endpoint %q: unknown event type %q", ep.Name, t)
				}
				l.Types[payment.EventType(t)] = true
			}
		}
		listeners = append(listeners, l)
	}
	return listeners, byName, nil
}

// destination signs body now, with the endpoint's current secrets: a retry
// ten minutes later still carries a fresh timestamp.
func (ep *EventEndpoint) destination(body []byte) delivery.Destination {
	h := http.Header{}
	h.Set(signature.Header, signature.Sign(ep.secrets, time.Now(), body))
	return delivery.Destination{URL: ep.url, Header: h}
}

// parseEvents parses
//
//	events {
//		endpoint <url> {
//			name <name>
//			secret <secret> [<previous secret>...]
//			types <EventType>...
//		}
//	}
func parseEvents(d *caddyfile.Dispenser) (*EventsConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	c := new(EventsConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "endpoint" {
			return nil, d.Errf("unknown events option %q (want endpoint)", d.Val())
		}
		ep := new(EventEndpoint)
		if !d.Args(&ep.URL) || d.NextArg() {
			return nil, d.Err("usage: endpoint <url> { secret …; types … }")
		}
		line := d.Line()
		for inner := d.Nesting(); d.NextBlock(inner); {
			switch opt := d.Val(); opt {
			case "name":
				if !d.Args(&ep.Name) || d.NextArg() {
					return nil, d.ArgErr()
				}
			case "secret":
				values, err := listArg(d)
				if err != nil {
					return nil, err
				}
				ep.Secrets = append(ep.Secrets, values...)
			case "types":
				values, err := listArg(d)
				if err != nil {
					return nil, err
				}
				ep.Types = append(ep.Types, values...)
				for _, t := range ep.Types {
					if !eventTypes[t] {
						return nil, d.Errf("unknown event type %q", t)
					}
				}
			default:
				return nil, d.Errf("unknown endpoint option %q", opt)
			}
		}
		if len(ep.Secrets) == 0 {
			return nil, fmt.Errorf("events endpoint %s: secret is required, at %s:%d", ep.URL, d.File(), line)
		}
		c.Endpoints = append(c.Endpoints, ep)
	}
	return c, nil
}
