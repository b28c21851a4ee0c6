package handlers

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/paybridge/caddy-paybridge/payment"
)

// openSession opens a checkout session of 1000 EUR on a real engine and
// returns the engine, the gateway's routes and the session's id.
func openSession(t *testing.T) (*payment.Engine, *GatewayRoutes, string) {
	t.Helper()
	_, engine := sandboxEngine(t)
	e, _ := engine(context.Background())
	ans, err := e.Open(context.Background(), payment.OpenRequest{
		Platform: PlatformOpenfront, Handler: "openfront", Gateway: "default",
		Key: "openfront|create|cart_1|1000|EUR", Amount: 1000, Currency: "EUR",
		Purchase: payment.Purchase{CartID: "cart_1"},
	}, func(v payment.Verdict) payment.Answer {
		return payment.Answer{Status: http.StatusOK, Body: []byte(v.Payment.ID)}
	})
	if err != nil {
		t.Fatal(err)
	}
	g := &GatewayRoutes{Name: "default", Checkout: true, Secrets: [][]byte{webhookSecret}, Engine: engine, Logger: zap.NewNop()}
	return e, g, string(ans.Body)
}

func confirmJSON(g *GatewayRoutes, id, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/psp/default/checkout/"+id+"/confirm", strings.NewReader(`{"token":"`+token+`"}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	return w
}

// A session whose authorization went pending and was then declined may be
// paid again, also with the same card: that is a new attempt, not the
// first confirmation's "pending" again.
func TestCheckoutConfirmAfterPendingThenDeclineIsANewAttempt(t *testing.T) {
	e, g, id := openSession(t)
	const token = "tok_async_decline_1"
	if w := confirmJSON(g, id, token); w.Code != http.StatusAccepted {
		t.Fatalf("first confirm: %d %s", w.Code, w.Body)
	}
	waitFor(t, func() bool {
		_ = e.ReconcilePayment(context.Background(), id)
		p, err := e.Payment(context.Background(), id)
		return err == nil && p.Status == payment.StatusRefused
	})
	p, _ := e.Payment(context.Background(), id)
	before := len(p.Txs)
	w := confirmJSON(g, id, token)
	var ans confirmAnswer
	if err := json.Unmarshal(w.Body.Bytes(), &ans); err != nil {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	p, _ = e.Payment(context.Background(), id)
	if len(p.Txs) != before+1 || w.Code != http.StatusAccepted || ans.Outcome != outcomePending {
		t.Fatalf("the second confirm of a declined session answered %d %s with %d new transactions, want a new pending attempt",
			w.Code, w.Body, len(p.Txs)-before)
	}
	// The same confirmation sent again is answered from the first.
	if again := confirmJSON(g, id, token); again.Code != w.Code || again.Body.String() != w.Body.String() {
		t.Errorf("the repeat of the second confirm: %d %s, first %d %s", again.Code, again.Body, w.Code, w.Body)
	}
}

// The page's form posts to the confirm route whether the page was opened
// with a trailing slash or not, and so does the result page's.
func TestCheckoutFormActionResolvesToConfirm(t *testing.T) {
	for _, path := range []string{"", "/"} {
		_, g, id := openSession(t)
		page := "http://pay.example/psp/default/checkout/" + id + path
		w := httptest.NewRecorder()
		g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, page, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d", page, w.Code)
		}
		// formTarget is where the form of a page served at base posts.
		formTarget := func(base, body string) string {
			t.Helper()
			m := regexp.MustCompile(`<form method="post" action="([^"]*)"`).FindStringSubmatch(body)
			if m == nil {
				t.Fatalf("no form on %s", base)
			}
			b, _ := url.Parse(base)
			rel, _ := url.Parse(m[1])
			target := b.ResolveReference(rel)
			if !strings.HasSuffix(target.Path, "/checkout/"+id+"/confirm") {
				t.Fatalf("the form on %s posts to %s", base, target.Path)
			}
			return target.String()
		}
		decline := func(target string) *httptest.ResponseRecorder {
			t.Helper()
			r := httptest.NewRequest(http.MethodPost, target, strings.NewReader("token=tok_decline"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			if w.Code != http.StatusPaymentRequired {
				t.Fatalf("confirm at %s: %d %s", target, w.Code, w.Body)
			}
			return w
		}
		target := formTarget(page, w.Body.String())
		// A declined session's result page offers the form again.
		formTarget(target, decline(target).Body.String())
		resultPage := "http://pay.example/psp/default/checkout/" + id + "/confirm" + path
		formTarget(resultPage, decline(resultPage).Body.String())
	}
}
