package handlers

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// Strings that encoding/json and JSON.stringify write differently, and
// some they write alike, as event fields would carry them.
var jsHardStrings = []string{
	"plain",
	"<b>&amp;</b>",
	"line\u2028sep\u2029para",
	"bad utf8 \xff\xfe end",
	"replacement \ufffd char",
	`back\slash "quote" \u2028 as text`,
	"tab\tnl\ncr\rbs\bff\f",
	"ctl \x00\x01\x1f\x7f",
	"emoji 💳 and é",
	"lone \\",
}

func jsHardEvent(s string) pspEvent {
	return pspEvent{
		ID: "evt_" + s, Type: EventAuthorized, Created: 1795226204,
		Data: pspEventData{
			PaymentID: "pay_1", Amount: 12900, Currency: "EUR", Status: s,
			Metadata: map[string]string{"cartId": s, "paymentCollectionId": "pcol_" + s, "z": "last", "a": "first"},
			Error:    &pspEventError{Code: "card_declined", Message: s},
		},
	}
}

func TestMarshalJSKeepsGoMeaning(t *testing.T) {
	for _, s := range jsHardStrings {
		b, err := marshalJS(jsHardEvent(s))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasSuffix(b, []byte("\n")) || bytes.Contains(b, []byte(`\u003c`)) || bytes.Contains(b, []byte("\\u2029")) {
			t.Errorf("%q: not compact JS form: %s", s, b)
		}
		var back pspEvent
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q: output is not JSON: %v\n%s", s, err, b)
		}
		// The same meaning encoding/json gives the string.
		var want string
		std, _ := json.Marshal(s)
		_ = json.Unmarshal(std, &want)
		if back.Data.Status != want || back.Data.Metadata["cartId"] != want {
			t.Errorf("%q: decodes to %q", s, back.Data.Status)
		}
	}
}

func TestUnescapeForJSLeavesEscapedBackslashAlone(t *testing.T) {
	in := []byte(`{"a":"\\u2028","b":"\u2028"}`)
	out, err := unescapeForJS(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := "{\"a\":\"\\\\u2028\",\"b\":\"\u2028\"}"; string(out) != want {
		t.Errorf("got %s, want %s", out, want)
	}
}

// TestMarshalJSSurvivesJavaScript runs the events through Node:
// JSON.stringify(JSON.parse(x)) must give x back, byte for byte, because
// Openfront does exactly that before handle-webhook checks the signature.
func TestMarshalJSSurvivesJavaScript(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is required under CI=true (.ci/run installs it)")
		}
		t.Skip("node not found; this test checks event bytes against JavaScript")
	}
	var lines [][]byte
	for _, s := range jsHardStrings {
		b, err := marshalJS(jsHardEvent(s))
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, b)
	}
	// The relay's canonical path too: a queued event rendered as relayed.
	ev, err := pspEventFromCanonical([]byte(`{"id":"evt_9","type":"PaymentRefused","occurred_at":"2026-11-21T01:02:03Z","sequence":2,"purchase":{"cartId":"c<1>&\u2028","paymentCollectionId":"pc"},"payment":{"id":"pay_9"},"amount":{"value":4200,"currency":"JPY"},"paymentData":{"decline_code":"card_declined","message":"déclinée"}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := marshalJS(ev)
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, b)

	script := `const lines = require("fs").readFileSync(0, "utf8").split("\n");
let bad = 0;
for (const l of lines) { if (!l) continue; const again = JSON.stringify(JSON.parse(l)); if (again !== l) { bad++; console.log("DIFF\n" + l + "\n" + again); } }
console.log("checked " + lines.filter(Boolean).length + ", different " + bad);
process.exit(bad ? 1 : 0);`
	cmd := exec.Command(node, "-e", script)
	cmd.Stdin = bytes.NewReader(append(bytes.Join(lines, []byte("\n")), '\n'))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("JavaScript re-serialises differently: %v\n%s", err, out)
	}
	t.Logf("node: %s", bytes.TrimSpace(out))
}
