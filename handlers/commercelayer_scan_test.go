package handlers

import (
	"encoding/json"
	"reflect"
	"testing"
)

// scanSeedBodies are documents for which the one-pass scan and
// encoding/json must agree; several are built to make the scan give up.
func scanSeedBodies(f *testing.F) [][]byte {
	out := fuzzSeedBodies(f)
	for _, s := range []string{
		readmeAuthorizeBody,
		// keys encoding/json matches without regard to case
		`{"DATA":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"}}}`,
		`{"data":{"ID":"1","type":"authorizations","attributes":{"Token":"t","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"},"relationships":{"order":{"Data":{"ID":"o"}}}},"included":[{"id":"o","type":"orders","attributes":{"currency_code":"EUR","total_amount_with_taxes_cents":1}}]}`,
		// fields given twice, escapes, strings json.Marshal escapes
		`{"data":{"id":"1","id":"2","type":"authorizations","attributes":{"token":"t","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","token":"u","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5,"amount_cents":6}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5,"created_at":"a","created_at":"b"}}}`,
		`{"data":{"id":"\u0031","type":"authorizations","attributes":{"token":"t\n","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"<t>&","amount_cents":5,"note":"a\u2028b"}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":"5","metadata":{"b":[1,{"z":null,"a":true}],"a":-0.5e+3}}}}`,
		"{\"data\":{\"id\":\"1\",\"type\":\"authorizations\",\"attributes\":{\"token\":\"t\xff\",\"amount_cents\":5}}}",
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"té","amount_cents":5,"metadata":{"nom":"Zoë"}}}}`,
		// attributes and orders of every shape
		`{"data":{"id":"1","type":"authorizations","attributes":null}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":[]}}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"}},"included":[{"id":"o","type":"orders"}]}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"}},"included":[{"id":"o","type":"orders","attributes":null}]}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"},"relationships":{"order":{"data":{"id":"p","type":"orders"}}}},"included":[null,{"id":"o","type":"orders","attributes":{}},{"id":"p","type":"orders","attributes":{"number":12,"currency_code":"usd","customer_email":null,"total_amount_with_taxes_cents":100}}]}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"},"relationships":{"order":null,"market":{"data":[1,2]}}},"included":[{"id":"o","type":"orders","attributes":{"number":"7"},"relationships":{"x":{}}}]}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"},"relationships":{"order":{"data":"o"}}},"included":[{"id":"o","type":"orders","attributes":{"number":"7"}}]}`,
		`{"data":{"id":"1","type":"external_payments","attributes":{"payment_source_token":"t"},"relationships":{"order":{"data":null},"order":{"data":{"id":"x"}}}},"included":[{"id":"o","type":"orders","attributes":{"number":"7"}}]}`,
		// invalid JSON, and JSON after the document
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":05}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5}}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5}}} {}`,
		` {"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5}},"meta":{"x":"\ud800"}}` + "\n",
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":1.}}}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// FuzzCommerceLayerScan holds the one-pass scan to encoding/json's reading
// of the same document: wherever the scan answers, both give the same
// document, and so the same call or error for every action.
func FuzzCommerceLayerScan(f *testing.F) {
	for _, b := range scanSeedBodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fast, ok := scanCommerceLayer(body)
		if !ok {
			return
		}
		slow, perr := parseCommerceLayer(body)
		if perr != nil {
			t.Fatalf("the scan read a document encoding/json refuses (%v): %q", perr, body)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("the scan and encoding/json disagree on %q:\nscan %+v\njson %+v", body, fast, slow)
		}
		for _, action := range clActionNames {
			c1, e1 := fast.call(action)
			c2, e2 := slow.call(action)
			if !reflect.DeepEqual(c1, c2) || !reflect.DeepEqual(e1, e2) {
				t.Fatalf("%s of %q: scan %+v %v, json %+v %v", action, body, c1, e1, c2, e2)
			}
		}
	})
}

// The scan must read the documents Commerce Layer really sends; were it to
// give up on them, every request would pay for both readings.
func TestScanReadsCommerceLayerDocuments(t *testing.T) {
	bodies := map[string][]byte{"readme authorize": []byte(readmeAuthorizeBody)}
	for _, action := range clActionNames {
		bodies[action] = mustJSON(t, clDocFor(action))
	}
	for name, body := range bodies {
		if _, ok := scanCommerceLayer(body); !ok {
			t.Errorf("%s: the scan gave up on %s", name, body)
		}
	}
}

func TestScanGivesUpWhereEncodingJSONDiffers(t *testing.T) {
	for _, body := range []string{
		`{"data":{"ID":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5}}}`,
		`{"data":{"id":"1","id":"2","type":"authorizations","attributes":{"token":"t","amount_cents":5}}}`,
		`{"data":{"id":"\u0031","type":"authorizations","attributes":{"token":"t","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":"5"}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","note":"<b>","amount_cents":5}}}`,
		`{"data":{"id":"1","type":"authorizations","attributes":{"token":"t","amount_cents":5}}} x`,
	} {
		if _, ok := scanCommerceLayer([]byte(body)); ok {
			t.Errorf("the scan answered for %s", body)
		}
	}
}

// scalarString reads plain strings itself; it must read them as
// json.Unmarshal does.
func TestScalarStringMatchesEncodingJSON(t *testing.T) {
	for _, raw := range []string{`"42"`, `"A-1"`, `"a\u0041"`, `"Zoë"`, "\"\xff\"", `""`, ` "7" `, `"<&>"`} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		if got := scalarString(json.RawMessage(raw)); got != want {
			t.Errorf("scalarString(%s) = %q, want %q", raw, got, want)
		}
	}
}

// Natural keys are stored with the answers they replay, so a new reading of
// a document must give the key earlier builds gave: these were computed by
// the decoder before the scan existed.
func TestNaturalKeysAreStableAcrossBuilds(t *testing.T) {
	for _, c := range []struct{ action, body, key string }{
		{"authorize", readmeAuthorizeBody,
			"authorize|external_payments|ep_1|cf4c3a5fdbf6131cf734a5619893ba507626cfce42b53b60b745451a5063a15c"},
		{"capture", `{"data":{"id":"auth_1","type":"authorizations","attributes":{"token":"pbt_1","currency_code":"EUR","amount_cents":12900,"capture_amount_cents":12900,"created_at":"2026-01-01T00:00:00Z","metadata":{"z":[1,2.50,{"b":null,"a":"Zoë"}]}}}}`,
			"capture|authorizations|auth_1|4a89058f381e1e6513286d70a79627b9f0b20086991218ee93203cff34ae7743"},
	} {
		if _, ok := scanCommerceLayer([]byte(c.body)); !ok {
			t.Errorf("%s: the scan gave up", c.action)
		}
		call, perr := decodeCommerceLayer(c.action, []byte(c.body))
		if perr != nil {
			t.Fatal(perr)
		}
		if call.key != c.key {
			t.Errorf("%s: key %s, earlier builds gave %s", c.action, call.key, c.key)
		}
	}
}
