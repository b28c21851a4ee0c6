package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/paybridge/caddy-paybridge/signature"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("paybridge", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("paybridge", parseHandlerDirective)
	// A paybridge handler answers every request it gets, like respond.
	httpcaddyfile.RegisterDirectiveOrder("paybridge", httpcaddyfile.Before, "respond")
}

// parseGlobalOption parses
//
//	paybridge {
//		storage <dir>
//		reconcile_interval <duration>
//		max_age <duration>
//		retry_backoff <min> <max>
//		events { endpoint <url> { secret …; types … } }
//		gateway <name> <type> { <type's options> }
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the paybridge global option is given twice")
	}
	app := new(App)
	d.Next()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "storage":
			if !d.Args(&app.Storage) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "reconcile_interval", "max_age":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			if opt == "max_age" {
				app.MaxAge = dur
			} else {
				app.ReconcileInterval = dur
			}
		case "retry_backoff":
			var lo, hi string
			if !d.Args(&lo, &hi) || d.NextArg() {
				return nil, d.Err("usage: retry_backoff <min> <max>")
			}
			min, err1 := caddy.ParseDuration(lo)
			max, err2 := caddy.ParseDuration(hi)
			if err1 != nil || err2 != nil || min <= 0 || max < min {
				return nil, d.Errf("retry_backoff: want two durations, min <= max, got %q %q", lo, hi)
			}
			app.RetryBackoffMin, app.RetryBackoffMax = caddy.Duration(min), caddy.Duration(max)
		case "events":
			if app.Events != nil {
				return nil, d.Err("events is given twice")
			}
			ev, err := parseEvents(d)
			if err != nil {
				return nil, err
			}
			app.Events = ev
		case "gateway":
			var name, typ string
			if !d.Args(&name, &typ) {
				return nil, d.Err("usage: gateway <name> <type> { ... }")
			}
			if _, dup := app.GatewaysRaw[name]; dup {
				return nil, d.Errf("gateway %q is defined twice", name)
			}
			info, err := caddy.GetModule("paybridge.gateways." + typ)
			if err != nil {
				return nil, d.Errf("unknown gateway type %q", typ)
			}
			unm, ok := info.New().(caddyfile.Unmarshaler)
			if !ok {
				return nil, d.Errf("gateway type %q cannot be configured from a Caddyfile", typ)
			}
			if err := unm.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return nil, err
			}
			if app.GatewaysRaw == nil {
				app.GatewaysRaw = make(map[string]json.RawMessage)
			}
			app.GatewaysRaw[name] = caddyconfig.JSONModuleObject(unm, "type", typ, nil)
		default:
			return nil, d.Errf("unknown paybridge option %q", opt)
		}
	}
	return httpcaddyfile.App{Name: "paybridge", Value: caddyconfig.JSON(app, nil)}, nil
}

// parseHandlerDirective parses
//
//	paybridge commercelayer {
//		name <name>
//		gateway <name>
//		shared_secret <secret> [<previous secret>...]
//		callback_url <url>
//		max_body_size <size>
//		deadline <duration>
//		async_timeout <duration>
//		unavailable async|fail
//	}
//	paybridge gateway <name>
func parseHandlerDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next()
	var kind string
	if !h.Args(&kind) {
		return nil, h.Err("usage: paybridge commercelayer { ... } | paybridge openfront { ... } | paybridge magento { ... } | paybridge gateway <name>")
	}
	handler := new(Handler)
	switch kind {
	case "commercelayer":
		if h.NextArg() {
			return nil, h.ArgErr()
		}
		cl, err := parseCommerceLayer(h.Dispenser)
		if err != nil {
			return nil, err
		}
		handler.CommerceLayer = cl
	case "openfront":
		if h.NextArg() {
			return nil, h.ArgErr()
		}
		of, err := parseOpenfront(h.Dispenser)
		if err != nil {
			return nil, err
		}
		handler.Openfront = of
	case "magento":
		if h.NextArg() {
			return nil, h.ArgErr()
		}
		mg, err := parseMagento(h.Dispenser)
		if err != nil {
			return nil, err
		}
		handler.Magento = mg
	case "gateway":
		if !h.Args(&handler.Gateway) || h.NextArg() {
			return nil, h.Err("usage: paybridge gateway <name>")
		}
		if h.NextBlock(0) {
			return nil, h.Err("paybridge gateway takes no block")
		}
	default:
		return nil, h.Errf("unknown paybridge platform %q (supported: commercelayer, openfront, magento, gateway)", kind)
	}
	return handler, nil
}

func parseCommerceLayer(d *caddyfile.Dispenser) (*CommerceLayerConfig, error) {
	c := new(CommerceLayerConfig)
	start := d.Val()
	startLine := d.Line()
	startFile := d.File()
	for d.NextBlock(0) {
		switch opt := d.Val(); opt {
		case "name", "gateway", "callback_url", "unavailable":
			if err := stringOption(d, map[string]*string{
				"name": &c.Name, "gateway": &c.Gateway, "callback_url": &c.CallbackURL, "unavailable": &c.Unavailable,
			}); err != nil {
				return nil, err
			}
			if opt == "unavailable" && c.Unavailable != "async" && c.Unavailable != "fail" {
				return nil, d.Errf("unavailable must be async or fail, not %q", c.Unavailable)
			}
		case "shared_secret":
			values, err := listArg(d)
			if err != nil {
				return nil, err
			}
			c.SharedSecrets = append(c.SharedSecrets, values...)
		case "max_body_size":
			n, err := sizeArg(d)
			if err != nil {
				return nil, err
			}
			c.MaxBodySize = n
		case "deadline", "async_timeout":
			dur, err := durationArg(d)
			if err != nil {
				return nil, err
			}
			if opt == "deadline" {
				c.Deadline = dur
			} else {
				c.AsyncTimeout = dur
			}
		default:
			return nil, d.Errf("unknown commercelayer option %q", opt)
		}
	}
	// Whether a secret is left once placeholders are replaced is only known
	// at provisioning; a missing directive is known here, with its line.
	for _, req := range []struct {
		opt     string
		missing bool
	}{{"shared_secret", len(c.SharedSecrets) == 0}, {"callback_url", c.CallbackURL == ""}} {
		if req.missing {
			return nil, fmt.Errorf("paybridge %s: %s is required, at %s:%d", start, req.opt, startFile, startLine)
		}
	}
	return c, nil
}

// stringOption sets the target its option names (the dispenser is at the
// option) to the option's one argument.
func stringOption(d *caddyfile.Dispenser, targets map[string]*string) error {
	opt := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return d.ArgErr()
	}
	*targets[opt] = v
	return nil
}

// listArg returns the option's arguments, of which there must be at least
// one: a repeated option (a second shared_secret during a rotation) may not
// be empty just because an earlier line had a value.
func listArg(d *caddyfile.Dispenser) ([]string, error) {
	values := d.RemainingArgs()
	if len(values) == 0 {
		return nil, d.ArgErr()
	}
	return values, nil
}

// sizeArg parses a size such as 1MiB, between 1 byte and 1 GiB.
func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<30 {
		return 0, d.Errf("%s: bad size %q", opt, v)
	}
	return int64(n), nil
}

// replacedSecrets replaces placeholders in each value and drops the empty
// ones (an unset {env.X}).
func replacedSecrets(repl *caddy.Replacer, values []string) [][]byte {
	out := make([]string, 0, len(values))
	for _, v := range values {
		out = append(out, repl.ReplaceAll(v, ""))
	}
	return signature.Secrets(out...)
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	var v string
	if !d.Args(&v) || d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: bad duration %q", opt, v)
	}
	return caddy.Duration(dur), nil
}

// httpURL reports whether s is an absolute http(s) URL with a host: every
// URL paybridge sends to is one, and a wrong one would only show as
// deliveries failing until max_age.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
