package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/handlers"
	"github.com/paybridge/caddy-paybridge/payment"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the operations API under /paybridge/ on Caddy's admin
// endpoint, which does the access control (localhost by default) and the
// origin checks:
//
//	GET  /paybridge/payments/{id}          a payment with its transactions and events
//	GET  /paybridge/outbox[?state=pending|dead][&limit=n]
//	POST /paybridge/outbox/{seq}/retry     replay a dead letter, or retry a queued message now
//	GET  /paybridge/magento                each Magento handler's bus endpoint and registration
//
// Caddy builds admin modules anew on every config load, possibly before the
// config's apps have started, so the running app is looked up per request.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.paybridge",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

const (
	adminPrefix = "/paybridge/"
	// maxListed caps one outbox listing.
	maxListed = 1000
)

// Routes implements caddy.AdminRouter.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminPrefix, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

func (a *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, adminPrefix)
	switch {
	case strings.HasPrefix(rest, "payments/") && len(rest) > len("payments/"):
		if err := allow(w, r, http.MethodGet); err != nil {
			return err
		}
		return a.payment(w, r, strings.TrimPrefix(rest, "payments/"))
	case rest == "outbox":
		if err := allow(w, r, http.MethodGet); err != nil {
			return err
		}
		return a.outbox(w, r)
	case rest == "magento":
		if err := allow(w, r, http.MethodGet); err != nil {
			return err
		}
		return a.magento(w)
	case strings.HasPrefix(rest, "outbox/") && strings.HasSuffix(rest, "/retry"):
		if err := allow(w, r, http.MethodPost); err != nil {
			return err
		}
		return a.retry(w, r, strings.TrimSuffix(strings.TrimPrefix(rest, "outbox/"), "/retry"))
	}
	return apiError(http.StatusNotFound, "resource not found: %s", r.URL.Path)
}

// magento answers the bus registration of every Magento handler: what the
// bus said about our endpoint (its remote_url and delegate_url are how
// others reach us), or why registering failed so far.
func (a *adminAPI) magento(w http.ResponseWriter) error {
	app, _, ok := live()
	if !ok {
		return apiError(http.StatusServiceUnavailable, "paybridge is not running")
	}
	out := map[string]any{}
	for name, h := range app.magento {
		out[name] = h.status()
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(out)
}

func allow(w http.ResponseWriter, r *http.Request, method string) error {
	if r.Method == method {
		return nil
	}
	w.Header().Set("Allow", method)
	return apiError(http.StatusMethodNotAllowed, "method not allowed: %s (use %s)", r.Method, method)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// withRuntime runs fn with the live runtime, holding its store open for the
// duration, like a platform request does.
func withRuntime(fn func(rt *runtime) error) error {
	_, rt, ok := live()
	if !ok || !rt.enter() {
		return apiError(http.StatusServiceUnavailable, "paybridge is not running: no paybridge app in the active config, or it has not started")
	}
	defer rt.exit()
	return fn(rt)
}

// payment answers a payment by its id; a transaction token, action id or
// PSP key (what a platform or PSP holds) finds its payment too.
func (a *adminAPI) payment(w http.ResponseWriter, r *http.Request, id string) error {
	return withRuntime(func(rt *runtime) error {
		var p *payment.Payment
		err := rt.store.View(r.Context(), func(tx payment.Tx) error {
			var err error
			p, err = tx.Payment(id)
			if !errors.Is(err, payment.ErrNotFound) {
				return err
			}
			pid, err := tx.PaymentIDByToken(id)
			if err != nil {
				return err
			}
			p, err = tx.Payment(pid)
			return err
		})
		if errors.Is(err, payment.ErrNotFound) {
			return apiError(http.StatusNotFound, "payment %q not found", id)
		}
		if err != nil {
			return apiError(http.StatusInternalServerError, "reading payment %q: %v", id, err)
		}
		return writeJSON(w, paymentView(p))
	})
}

// paymentView is a copy of p safe to show: the payment source token (a PSP
// credential) is masked wherever it appears (Magento's gateway key is also
// the authorization's reference and part of its keys), and a platform
// command's copy of its payment struct (card and bank details) is left
// out. Transaction tokens are the platform's to see.
func paymentView(p *payment.Payment) payment.Payment {
	v := *p
	// The gateway keys of re-authorizations (Aliases) are source tokens too.
	secrets := append([]string{p.SourceToken}, p.Aliases...)
	hide := func(s string) string {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(s, secret) {
				s = strings.ReplaceAll(s, secret, maskToken(secret))
			}
		}
		return s
	}
	v.SourceToken = maskToken(p.SourceToken)
	v.Aliases = make([]string, len(p.Aliases))
	for i, a := range p.Aliases {
		v.Aliases[i] = maskToken(a) // the gateway keys of re-authorizations
	}
	v.Txs = make([]*payment.Transaction, len(p.Txs))
	for i, t := range p.Txs {
		c := *t
		c.Command = nil
		c.PSPRef, c.PSPKey, c.IdempotencyKey = hide(t.PSPRef), hide(t.PSPKey), hide(t.IdempotencyKey)
		v.Txs[i] = &c
	}
	return v
}

// maskToken keeps the first and last 4 characters of a token longer than
// 12, and nothing of a shorter one.
func maskToken(s string) string {
	switch {
	case s == "":
		return ""
	case len(s) > 12:
		return s[:4] + "…" + s[len(s)-4:]
	default:
		return "…"
	}
}

// messageView is an outbox message as the API shows it.
type messageView struct {
	Seq         uint64          `json:"seq"`
	Kind        string          `json:"kind"`
	Target      string          `json:"target"`
	PaymentID   string          `json:"payment_id"`
	Attempts    int             `json:"attempts"`
	NextAttempt *time.Time      `json:"next_attempt"` // null: due now
	LastError   string          `json:"last_error"`
	CreatedAt   time.Time       `json:"created_at"`
	Dead        bool            `json:"dead"`
	Body        json.RawMessage `json:"body"`
}

func newMessageView(m payment.Message) messageView {
	v := messageView{
		Seq: m.Seq, Kind: m.Kind, Target: m.Target, PaymentID: m.PaymentID,
		Attempts: m.Attempts, LastError: m.LastError, CreatedAt: m.CreatedAt, Dead: m.Dead,
		Body: json.RawMessage(m.Body),
	}
	if !m.NextAttempt.IsZero() {
		t := m.NextAttempt
		v.NextAttempt = &t
	}
	// Bodies are JSON paybridge encoded; anything else is shown as a
	// string rather than breaking the whole answer.
	if !json.Valid(m.Body) {
		v.Body, _ = json.Marshal(string(m.Body))
	} else if m.Kind == handlers.PlatformMagento {
		v.Body = redactMagento(v.Body)
	}
	return v
}

// redactMagento hides what a Magento notification echoes of its command's
// payment that the operations API must not show, as paymentView does: the
// card and bank details, and the gateway key (the payment source token).
func redactMagento(body json.RawMessage) json.RawMessage {
	var n map[string]any
	if json.Unmarshal(body, &n) != nil {
		return body
	}
	params, _ := n["params"].(map[string]any)
	p, _ := params["payment"].(map[string]any)
	if p == nil {
		return body
	}
	if _, ok := p["method_details"]; ok {
		p["method_details"] = "(hidden)"
	}
	for _, k := range []string{"gateway_key", "new_gateway_key"} {
		if s, ok := p[k].(string); ok {
			p[k] = maskToken(s)
		}
	}
	out, err := json.Marshal(n)
	if err != nil {
		return body
	}
	return out
}

func (a *adminAPI) outbox(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		state = "pending"
	}
	if state != "pending" && state != "dead" {
		return apiError(http.StatusBadRequest, "state %q: want pending or dead", state)
	}
	limit := maxListed
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			return apiError(http.StatusBadRequest, "limit %q: want a positive integer (at most %d)", s, maxListed)
		}
		limit = min(n, maxListed)
	}
	return withRuntime(func(rt *runtime) error {
		list := rt.store.PendingMessages
		if state == "dead" {
			list = rt.store.DeadLetters
		}
		ms, err := list(limit)
		if err != nil {
			return apiError(http.StatusInternalServerError, "listing the outbox: %v", err)
		}
		out := make([]messageView, 0, len(ms))
		for _, m := range ms {
			out = append(out, newMessageView(m))
		}
		return writeJSON(w, out)
	})
}

func (a *adminAPI) retry(w http.ResponseWriter, _ *http.Request, s string) error {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return apiError(http.StatusBadRequest, "message %q: want a sequence number", s)
	}
	return withRuntime(func(rt *runtime) error {
		m, err := rt.store.Replay(seq, time.Now())
		if errors.Is(err, payment.ErrNotFound) {
			return apiError(http.StatusNotFound, "message %d is neither queued nor dead (delivered, or never existed)", seq)
		}
		if err != nil {
			return apiError(http.StatusInternalServerError, "replaying message %d: %v", seq, err)
		}
		rt.worker.Kick()
		if app := rt.current.Load(); app != nil {
			app.logger.Info("outbox message replayed from the admin API",
				zap.Uint64("seq", m.Seq), zap.String("kind", m.Kind),
				zap.String("target", m.Target), zap.String("payment_id", m.PaymentID))
		}
		return writeJSON(w, newMessageView(m))
	})
}

func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return apiError(http.StatusInternalServerError, "encoding the answer: %v", err)
	}
	w.Header().Set("Content-Type", "application/json")
	// A failed write means the client is gone; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
	return nil
}

var (
	_ caddy.Module      = (*adminAPI)(nil)
	_ caddy.AdminRouter = (*adminAPI)(nil)
)
