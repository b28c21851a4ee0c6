//go:build fault

package fault

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paybridge/caddy-paybridge/internal/oftest"
)

// TestKill9OpenfrontCapturesInFlight: tok_outage makes every PSP attempt fail
// for 2s after an operation is created (deadline 3s, so a capture succeeds
// after ~2s). Caddy is killed while two captures are in flight: 4000 on X
// (6000 already captured) and 10000 on Y. Neither reached the PSP.
func TestKill9OpenfrontCapturesInFlight(t *testing.T) {
	fig := scenario(t, "kill-9-openfront-in-flight")
	c := newCaddy(t, config{})
	cf := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	paybridge {
		storage %q
		reconcile_interval 50ms
		gateway default sandbox {
			outage 2s
			ledger %q
			public_url %s/psp/default
			webhook_secret whsec
		}
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	handle /openfront/* {
		paybridge openfront {
			api_key k
			deadline 3s
		}
	}
	handle /psp/default/* {
		paybridge gateway default
	}
}`, c.cfg.Admin, c.cfg.Storage, c.cfg.Ledger, c.base, c.cfg.HTTP)
	start := func() {
		os.WriteFile(c.cfgPath, []byte(cf), 0o600)
		c.runs++
		f, _ := os.Create(filepath.Join(c.dir, fmt.Sprintf("caddy-%d.log", c.runs)))
		c.logs = append(c.logs, f.Name())
		cmd := exec.Command(caddyBin, "run", "--config", c.cfgPath, "--adapter", "caddyfile")
		cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, f, f
		cmd.Env = append(os.Environ(), "HOME="+filepath.Join(c.dir, "home"), "XDG_DATA_HOME="+filepath.Join(c.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); f.Close(); close(done) }()
		c.cmd, c.done = cmd, done
		if err := c.waitReady(20 * time.Second); err != nil {
			t.Fatalf("%v\n%s", err, c.logTail(40))
		}
	}
	// post retries transport errors and 503s with the identical body.
	post := func(path string, body []byte) string {
		for {
			resp, err := http.Post(c.base+path, "application/json", bytes.NewReader(body))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 503 {
					return fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	start()
	pay := func(cart string) string {
		out := post("/openfront/create-payment", oftest.CheckoutCreate("k", cart, 10000, "eur"))
		id := out[strings.Index(out, `"paymentId":"`)+13:][:36]
		t.Logf("confirm %s: %s", id, post("/psp/default/checkout/"+id+"/confirm", []byte(`{"token":"tok_outage_`+uid()+`"}`)))
		return id
	}
	x, y := pay("cart_x_"+uid()), pay("cart_y_"+uid())
	t.Logf("X capture 6000: %s", post("/openfront/capture-payment", oftest.Capture("k", x, 6000)))
	answers := make(chan string, 2)
	go func() {
		answers <- "X capture 4000: " + post("/openfront/capture-payment", oftest.Capture("k", x, 4000))
	}()
	go func() {
		answers <- "Y capture 10000: " + post("/openfront/capture-payment", oftest.Capture("k", y, 10000))
	}()
	time.Sleep(300 * time.Millisecond)
	c.kill9()
	start()
	for _, a := range []string{<-answers, <-answers} {
		t.Logf("answered after the restart: %s", a)
		if strings.HasPrefix(a, "X") && strings.Contains(a, "HTTP 200") && !strings.Contains(a, `"capturedAmount":4000`) {
			t.Errorf("X's capture of 4000 was answered with another capture")
		}
	}
	t.Logf("Y capture 10000 again: %s", post("/openfront/capture-payment", oftest.Capture("k", y, 10000)))
	waitUntil(15*time.Second, func() bool {
		p, _ := c.getPayment(x)
		q, _ := c.getPayment(y)
		return p != nil && q != nil && !p.open() && !q.open()
	})
	t.Logf("X capture 4000 again: %s", post("/openfront/capture-payment", oftest.Capture("k", x, 4000)))
	ledger := ledgerIndex(readLedger(t, c.cfg.Ledger))
	bad := 0
	for _, id := range []string{x, y} {
		p, _ := c.getPayment(id)
		for _, tx := range p.Txs {
			t.Logf("%s: %s %s %d %s executed_anyway=%v ledger_lines=%d", id, tx.Kind, tx.Token, tx.Amount, tx.State, tx.ExecutedAnyway, ledger[tx.Kind+" "+tx.PSPKey])
			if tx.State == "succeeded" && ledger[tx.Kind+" "+tx.PSPKey] == 0 {
				bad++
				t.Errorf("%s: %s of %d succeeded in the store; the sandbox never executed it", id, tx.Kind, tx.Amount)
			}
		}
	}
	fig.set("unexecuted", "%d", bad)
}
