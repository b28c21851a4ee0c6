package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/paybridge/caddy-paybridge/payment"
)

// fill sets every field reachable from v to a distinct non-zero value, and
// fails on a kind it does not know: a field added to a stored struct is
// either filled here and then lost by the codec (the round trip fails), or
// stops this test until someone looks at it.
func fill(t *testing.T, v reflect.Value, n *int, path string) {
	t.Helper()
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("%s-%d-é\x00\"", path, *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n) * -1_000_003)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			v.SetBytes([]byte(fmt.Sprintf(`{"%s":%d}`, path, *n)))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(t, s.Index(i), n, fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := range 3 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, n, fmt.Sprintf("%s.key%d", path, i))
			fill(t, e, n, fmt.Sprintf("%s.value%d", path, i))
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), n, path)
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			// A zone that is neither UTC nor Local: the offset must survive.
			zone := time.FixedZone("", (*n%24-12)*3600+30*60)
			v.Set(reflect.ValueOf(time.Date(2026, 11, 21, 5, *n%60, 7, *n*1_000_001, zone)))
			return
		}
		for i := range v.NumField() {
			fill(t, v.Field(i), n, path+"."+v.Type().Field(i).Name)
		}
	default:
		t.Fatalf("%s: a %s field; teach the codec and this test about it", path, v.Type())
	}
}

// sameInstants compares times by instant and offset, as time.Time's own
// binary form keeps them (a fixed zone's name is not kept).
func sameInstants(t *testing.T, got, want any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("round trip changed the value:\n got %s\nwant %s", g, w)
	}
}

func TestEncodingCoversEveryField(t *testing.T) {
	var n int
	roundTripFilled(t, &n, encodePayment, decodePayment)
	roundTripFilled(t, &n, encodeIdempotency, decodeIdempotency)
}

func roundTripFilled[T any](t *testing.T, n *int, encode func(*T) ([]byte, error), decode func([]byte, *T) error) {
	t.Helper()
	v := new(T)
	fill(t, reflect.ValueOf(v).Elem(), n, reflect.TypeFor[T]().Name())
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	got := new(T)
	if err := decode(b, got); err != nil {
		t.Fatal(err)
	}
	sameInstants(t, got, v)
}

func TestEncodingIsDeterministic(t *testing.T) {
	p := newPayment("det")
	p.Txs[0].Details = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6"}
	first, err := encodePayment(p)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		b, err := encodePayment(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, first) {
			t.Fatal("one payment encoded two ways")
		}
	}
}

// A damaged value is an error, never a panic or a half-read payment taken
// for whole.
func TestDecodingRefusesDamagedValues(t *testing.T) {
	var n int
	p := new(payment.Payment)
	fill(t, reflect.ValueOf(p).Elem(), &n, "Payment")
	b, err := encodePayment(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(b) {
		if err := decodePayment(b[:i], new(payment.Payment)); !errors.Is(err, errCorrupt) {
			t.Fatalf("%d of %d bytes: err = %v, want errCorrupt", i, len(b), err)
		}
	}
	if err := decodePayment(append(b, 0), new(payment.Payment)); !errors.Is(err, errCorrupt) {
		t.Fatalf("a trailing byte: err = %v, want errCorrupt", err)
	}
	r, err := encodeIdempotency(&payment.IdempotencyRecord{Key: "k", Done: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := decodePayment(r, new(payment.Payment)); !errors.Is(err, errCorrupt) {
		t.Fatalf("an idempotency record read as a payment: err = %v", err)
	}
}

func TestEncodingRefusesUnstorableTime(t *testing.T) {
	p := newPayment("odd-zone")
	// time.Time's binary form keeps -1 minute for UTC, so it refuses a zone
	// one minute west of it.
	p.CreatedAt = time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("odd", -60))
	if _, err := encodePayment(p); err == nil {
		t.Fatal("a time the binary form cannot hold was encoded")
	}
}

// A store written by a build that stored JSON (schema "1") opens, its
// values read back, new writes are binary, and the store is stamped "2" so
// such a build no longer opens it.
func TestOpensJSONStore(t *testing.T) {
	dir := t.TempDir()
	old := newPayment("old")
	old.Txs[0].Details = map[string]string{"decline_code": "do_not_honor"}
	rec := &payment.IdempotencyRecord{Key: "cl|authorize|old", Done: true, PaymentID: "old", TxID: "old-t1",
		Answer: payment.Answer{Status: 200, Body: []byte(`{"data":{"id":"x"}}`)}, CreatedAt: t0}
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(txn *badger.Txn) error {
		pj, _ := json.Marshal(old)
		rj, _ := json.Marshal(rec)
		for k, v := range map[string][]byte{
			string(keySchema):               []byte(schemaVersionJSON),
			string(paymentKey(old.ID)):      pj,
			string(idempotencyKey(rec.Key)): rj,
			string(tokenKey("tok-old")):     []byte(old.ID),
		} {
			if err := txn.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sameInstants(t, get(t, s, "old"), old)
	err = s.View(context.Background(), func(tx payment.Tx) error {
		got, err := tx.Idempotency(rec.Key)
		if err != nil {
			return err
		}
		sameInstants(t, got, rec)
		if id, err := tx.PaymentIDByToken("tok-old"); err != nil || id != "old" {
			return fmt.Errorf("token index: %q, %v", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	old.Captured = 1000
	put(t, s, old)
	err = s.db.View(func(txn *badger.Txn) error {
		for k, want := range map[string]byte{string(keySchema): schemaVersion[0], string(paymentKey("old")): tagPayment} {
			item, err := txn.Get([]byte(k))
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) == 0 || v[0] != want {
				return fmt.Errorf("%s: stored %q, want it to start with %q", k, v, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "old"); got.Captured != 1000 {
		t.Fatalf("captured %d after the binary rewrite, want 1000", got.Captured)
	}
}

func BenchmarkPaymentCodec(b *testing.B) {
	p := newPayment("bench")
	capture := *p.Txs[0]
	capture.ID, capture.Kind, capture.Token = "bench-t2", payment.Capture, "tok-bench-2"
	p.Txs = append(p.Txs, &capture)
	enc := map[string]func(*payment.Payment) ([]byte, error){
		"binary": encodePayment,
		"json":   func(p *payment.Payment) ([]byte, error) { return json.Marshal(p) },
	}
	for _, name := range []string{"binary", "json"} {
		v, err := enc[name](p)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := enc[name](p); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(v)), "bytes/value")
		})
		b.Run("decode/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := decodePayment(v, new(payment.Payment)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Idempotency records written before the currency was kept end after
// CreatedAt; they still decode, with no currency.
func TestIdempotencyRecordWithoutCurrency(t *testing.T) {
	r := &payment.IdempotencyRecord{Key: "k", Done: true, PaymentID: "pay_1", TxID: "tx_1",
		Answer: payment.Answer{Status: 200, Body: []byte(`{"ok":true}`)}, Amount: 500,
		CreatedAt: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	b, err := encodeIdempotency(r)
	if err != nil {
		t.Fatal(err)
	}
	if b[len(b)-1] != 0 {
		t.Fatalf("an empty currency should end the value with a zero length, got %x", b[len(b)-1])
	}
	var got payment.IdempotencyRecord
	if err := decodeIdempotency(b[:len(b)-1], &got); err != nil {
		t.Fatalf("decoding a record without its currency: %v", err)
	}
	if !reflect.DeepEqual(&got, r) {
		t.Fatalf("decoded %+v, want %+v", got, *r)
	}
}
