package caddymodule

// A headless-Chromium test of the sandbox's checkout page: the page
// Openfront's checkoutUrl sends a customer to, paid once with the approving
// test card and once with the declining one, through a real browser
// submitting the real form. Screenshots are kept as test artifacts.

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const (
	browserAPIKey    = "of_test_key"
	browserPublicURL = baseURL + "/psp/default"
)

// browserCheckoutConfig is the Openfront + sandbox gateway config a person
// would use to try the checkout page by hand.
func browserCheckoutConfig(storage string) string {
	return `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	paybridge {
		storage ` + storage + `
		gateway default sandbox {
			async_delay 200ms
			public_url ` + browserPublicURL + `
			webhook_secret whsec_test
		}
	}
}

http://localhost:9080 {
	handle /openfront/* {
		paybridge openfront {
			api_key ` + browserAPIKey + `
		}
	}
	handle /psp/default/* {
		paybridge gateway default
	}
}
`
}

// browserPath finds a Chromium or Chrome on PATH. Without one the test is
// skipped, except in CI (CI=true), which installs Chromium (.ci/run).
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium, chromium-browser or google-chrome on PATH, and CI=true: CI installs chromium; see .ci/run")
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH: skipping the browser test of the checkout page (apt-get install chromium to run it)")
	return ""
}

// browserArtifactDir is where screenshots go: $PAYBRIDGE_ARTIFACTS, else
// paybridge-artifacts in the system's temporary directory.
func browserArtifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PAYBRIDGE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "paybridge-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	return dir
}

// browserProvider is the Openfront provider object every call carries.
func browserProvider() map[string]any {
	return map[string]any{
		"id":          "prov_1",
		"code":        "pp_paybridge",
		"credentials": map[string]any{"apiKey": browserAPIKey},
	}
}

// browserOpenfront POSTs body to an Openfront function and returns the
// decoded 200 answer.
func browserOpenfront(t *testing.T, function string, body map[string]any) map[string]any {
	t.Helper()
	r := do(t, http.MethodPost, "/openfront/"+function, mustJSON(t, body), map[string]string{"Content-Type": "application/json"})
	if r.Status != http.StatusOK {
		t.Fatalf("%s: %s", function, r)
	}
	return decodeJSON(t, r.Body)
}

// browserCreatePayment opens a 129.00 EUR payment for cartID and returns
// its id and checkout page.
func browserCreatePayment(t *testing.T, cartID string) (id, checkoutURL string) {
	t.Helper()
	m := browserOpenfront(t, "create-payment", map[string]any{
		"provider": browserProvider(),
		"cart": map[string]any{
			"id":                cartID,
			"rawTotal":          12900,
			"region":            map[string]any{"currency": map[string]any{"code": "eur"}},
			"paymentCollection": map[string]any{"id": "pcol_1"},
		},
		"amount":   12900,
		"currency": "eur",
	})
	id = str(t, m, "paymentId")
	checkoutURL = str(t, m, "checkoutUrl")
	if want := browserPublicURL + "/checkout/" + id; checkoutURL != want {
		t.Fatalf("checkoutUrl %q, want %q", checkoutURL, want)
	}
	return id, checkoutURL
}

// browserPaymentStatus is Openfront's get-payment-status of id.
func browserPaymentStatus(t *testing.T, id string) string {
	t.Helper()
	m := browserOpenfront(t, "get-payment-status", map[string]any{
		"provider":  browserProvider(),
		"paymentId": id,
	})
	if m["paymentId"] != id {
		t.Errorf("get-payment-status answered for %v, want %s: %v", m["paymentId"], id, m)
	}
	return str(t, m, "status")
}

func TestCheckoutBrowser(t *testing.T) {
	browser := browserPath(t)
	artifacts := browserArtifactDir(t)
	t.Logf("browser %s; screenshots go to %s", browser, artifacts)

	startCaddy(t, browserCheckoutConfig(filepath.Join(t.TempDir(), "store")))

	approveID, approveURL := browserCreatePayment(t, "cart_browser_approve_"+uid())
	declineID, declineURL := browserCreatePayment(t, "cart_browser_decline_"+uid())
	if approveID == declineID {
		t.Fatalf("two carts got the same payment %s", approveID)
	}

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests run as root
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1024, 768),
	)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	save := func(name string, png []byte) {
		t.Helper()
		if len(png) < 8 || string(png[1:4]) != "PNG" {
			t.Errorf("%s: the screenshot is not a PNG (%d bytes)", name, len(png))
			return
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Errorf("writing %s: %v", path, err)
			return
		}
		t.Logf("screenshot %s (%d bytes)", path, len(png))
	}

	// pay opens the checkout page, picks token, pays and returns the
	// result heading; pageShot, if set, receives the page before paying.
	pay := func(checkoutURL, token string, pageShot *[]byte) (result string) {
		t.Helper()
		var amount, status string
		var checked bool
		actions := []chromedp.Action{
			chromedp.Navigate(checkoutURL),
			chromedp.WaitVisible("#pay", chromedp.ByQuery),
			chromedp.Text("#amount", &amount, chromedp.ByQuery),
			chromedp.Text("#status", &status, chromedp.ByQuery),
			chromedp.Click("#"+token, chromedp.ByQuery),
			chromedp.JavascriptAttribute("#"+token, "checked", &checked, chromedp.ByQuery),
		}
		if pageShot != nil {
			actions = append(actions, chromedp.FullScreenshot(pageShot, 100))
		}
		if err := chromedp.Run(ctx, actions...); err != nil {
			t.Fatalf("checkout page %s: %v", checkoutURL, err)
		}
		if got := strings.TrimSpace(amount); got != "129.00 EUR" {
			t.Errorf("amount on the page %q, want %q", got, "129.00 EUR")
		}
		if got := strings.TrimSpace(status); got != "open" {
			t.Errorf("status on the page before paying %q, want open", got)
		}
		if !checked {
			t.Errorf("clicking #%s did not select it", token)
		}
		if err := chromedp.Run(ctx,
			chromedp.Click("#pay", chromedp.ByQuery),
			chromedp.WaitVisible("#result", chromedp.ByQuery),
			chromedp.Text("#result", &result, chromedp.ByQuery),
		); err != nil {
			t.Fatalf("paying %s with %s: %v", checkoutURL, token, err)
		}
		return strings.TrimSpace(result)
	}

	// Approve.
	var pagePNG, approvePNG, declinePNG []byte
	if got := pay(approveURL, "tok_visa", &pagePNG); got != "Payment authorized" {
		t.Errorf("approving: result %q, want %q", got, "Payment authorized")
	}
	save("checkout-page.png", pagePNG)
	var location string
	if err := chromedp.Run(ctx,
		chromedp.Location(&location),
		chromedp.FullScreenshot(&approvePNG, 100),
	); err != nil {
		t.Fatalf("after approving: %v", err)
	}
	if want := approveURL + "/confirm"; location != want {
		t.Errorf("the form posted to %s, want %s", location, want)
	}
	save("checkout-approve.png", approvePNG)

	// Decline: the result, and the form again so the customer can retry.
	if got := pay(declineURL, "tok_decline", nil); got != "Payment declined" {
		t.Errorf("declining: result %q, want %q", got, "Payment declined")
	}
	var retry int
	if err := chromedp.Run(ctx,
		chromedp.FullScreenshot(&declinePNG, 100),
		chromedp.Evaluate(`document.querySelectorAll('#pay, input[name="token"]').length`, &retry),
	); err != nil {
		t.Fatalf("after declining: %v", err)
	}
	save("checkout-decline.png", declinePNG)
	if retry != 1+len([]string{"tok_visa", "tok_decline", "tok_3ds", "tok_async"}) {
		t.Errorf("the declined page offers %d of the pay button and the 4 tokens, want all 5 to retry", retry)
	}

	// What the server holds, as Openfront reads it.
	if got := browserPaymentStatus(t, approveID); got != "authorized" {
		t.Errorf("get-payment-status of the approved payment %s: %q, want authorized", approveID, got)
	}
	if got := browserPaymentStatus(t, declineID); got != "failed" {
		t.Errorf("get-payment-status of the declined payment %s: %q, want failed", declineID, got)
	}
}
