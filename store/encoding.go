package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/paybridge/caddy-paybridge/payment"
)

// Payments and idempotency records are stored in a compact binary form
// rather than JSON: every authorize or capture reads its payment and writes
// it back, and a replay reads its record, so decoding and encoding them was
// a fifth of the CPU a request cost, and the JSON text doubled what Badger
// compacts. Values written by earlier builds are JSON, and are still read:
// a JSON value starts with '{', a binary one with its tag.
//
// A binary value is its tag, then each field in the order of the struct's
// declaration: integers as varints, strings and byte slices as a uvarint
// length and the bytes, booleans of a struct packed into one uvarint, slices
// and maps as a uvarint count and their elements (map entries in key order,
// so one value always encodes the same way), and times as a length byte and
// time.Time's own binary form (0 for the zero time). A change to a struct
// needs a new tag; TestEncodingCoversEveryField fails until it has one.
const (
	tagPayment     byte = 0x01
	tagIdempotency byte = 0x02
)

func encodePayment(p *payment.Payment) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 256+192*len(p.Txs))}
	e.b = append(e.b, tagPayment)
	e.string(p.ID)
	e.string(p.Platform)
	e.string(p.Handler)
	e.string(p.Gateway)
	e.string(p.Purchase.OrderID)
	e.string(p.Purchase.OrderNumber)
	e.string(p.Purchase.CartID)
	e.string(p.Purchase.CollectionID)
	e.string(p.Currency)
	e.int(p.Amount)
	e.string(p.SourceToken)
	e.string(string(p.Status))
	e.int(p.Authorized)
	e.int(p.Captured)
	e.int(p.Refunded)
	e.uint(uint64(len(p.Txs)))
	for _, t := range p.Txs {
		if t == nil {
			return nil, errors.New("a nil transaction")
		}
		e.transaction(t)
	}
	e.uint(uint64(len(p.Aliases)))
	for _, a := range p.Aliases {
		e.string(a)
	}
	e.uint(uint64(len(p.Events)))
	for i := range p.Events {
		ev := &p.Events[i]
		e.string(ev.ID)
		e.string(string(ev.Type))
		e.int(ev.Sequence)
		e.string(ev.TxID)
		e.int(ev.Amount)
		e.time(ev.OccurredAt)
	}
	e.time(p.CreatedAt)
	e.time(p.UpdatedAt)
	return e.b, e.err
}

func (e *encoder) transaction(t *payment.Transaction) {
	e.string(t.ID)
	e.string(string(t.Kind))
	e.string(t.Token)
	e.string(t.Parent)
	e.int(t.Amount)
	e.string(string(t.State))
	e.string(t.PSPKey)
	e.string(t.PSPRef)
	e.string(t.IdempotencyKey)
	e.string(t.ActionID)
	e.flags(t.Notify, t.Verify, t.Uncertain, t.ExecutedAnyway, t.AuthRequired, t.Session, t.Voided)
	e.bytes(t.Command)
	e.string(t.Code)
	e.string(t.Message)
	e.uint(uint64(len(t.Details)))
	for _, k := range slices.Sorted(maps.Keys(t.Details)) {
		e.string(k)
		e.string(t.Details[k])
	}
	e.int(int64(t.Attempts))
	e.time(t.CreatedAt)
	e.time(t.UpdatedAt)
	e.time(t.NextCheck)
	e.time(t.GiveUpAt)
}

func decodePayment(b []byte, p *payment.Payment) error {
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, p)
	}
	d, err := newDecoder(b, tagPayment)
	if err != nil {
		return err
	}
	p.ID = d.string()
	p.Platform = d.string()
	p.Handler = d.string()
	p.Gateway = d.string()
	p.Purchase.OrderID = d.string()
	p.Purchase.OrderNumber = d.string()
	p.Purchase.CartID = d.string()
	p.Purchase.CollectionID = d.string()
	p.Currency = d.string()
	p.Amount = d.int()
	p.SourceToken = d.string()
	p.Status = payment.Status(d.string())
	p.Authorized = d.int()
	p.Captured = d.int()
	p.Refunded = d.int()
	if n := d.count(); n > 0 {
		txs := make([]payment.Transaction, n)
		p.Txs = make([]*payment.Transaction, n)
		for i := range txs {
			d.transaction(&txs[i])
			p.Txs[i] = &txs[i]
		}
	}
	if n := d.count(); n > 0 {
		p.Aliases = make([]string, n)
		for i := range p.Aliases {
			p.Aliases[i] = d.string()
		}
	}
	if n := d.count(); n > 0 {
		p.Events = make([]payment.Event, n)
		for i := range p.Events {
			ev := &p.Events[i]
			ev.ID = d.string()
			ev.Type = payment.EventType(d.string())
			ev.Sequence = d.int()
			ev.TxID = d.string()
			ev.Amount = d.int()
			ev.OccurredAt = d.time()
		}
	}
	p.CreatedAt = d.time()
	p.UpdatedAt = d.time()
	return d.end()
}

func (d *decoder) transaction(t *payment.Transaction) {
	t.ID = d.string()
	t.Kind = payment.Kind(d.string())
	t.Token = d.string()
	t.Parent = d.string()
	t.Amount = d.int()
	t.State = payment.TxState(d.string())
	t.PSPKey = d.string()
	t.PSPRef = d.string()
	t.IdempotencyKey = d.string()
	t.ActionID = d.string()
	d.flags(&t.Notify, &t.Verify, &t.Uncertain, &t.ExecutedAnyway, &t.AuthRequired, &t.Session, &t.Voided)
	t.Command = d.bytes()
	t.Code = d.string()
	t.Message = d.string()
	if n := d.count(); n > 0 {
		t.Details = make(map[string]string, n)
		for range n {
			k := d.string()
			t.Details[k] = d.string()
		}
	}
	t.Attempts = int(d.int())
	t.CreatedAt = d.time()
	t.UpdatedAt = d.time()
	t.NextCheck = d.time()
	t.GiveUpAt = d.time()
}

func encodeIdempotency(r *payment.IdempotencyRecord) ([]byte, error) {
	e := encoder{b: make([]byte, 0, 96+len(r.Key)+len(r.Answer.Body))}
	e.b = append(e.b, tagIdempotency)
	e.string(r.Key)
	e.flags(r.Done)
	e.string(r.PaymentID)
	e.string(r.TxID)
	e.int(int64(r.Answer.Status))
	e.bytes(r.Answer.Body)
	e.int(r.Amount)
	e.time(r.CreatedAt)
	e.string(r.Currency)
	return e.b, e.err
}

func decodeIdempotency(b []byte, r *payment.IdempotencyRecord) error {
	if len(b) > 0 && b[0] == '{' {
		return json.Unmarshal(b, r)
	}
	d, err := newDecoder(b, tagIdempotency)
	if err != nil {
		return err
	}
	r.Key = d.string()
	d.flags(&r.Done)
	r.PaymentID = d.string()
	r.TxID = d.string()
	r.Answer.Status = int(d.int())
	r.Answer.Body = d.bytes()
	r.Amount = d.int()
	r.CreatedAt = d.time()
	// Records written before the currency was kept end here.
	if !d.atEnd() {
		r.Currency = d.string()
	}
	return d.end()
}

type encoder struct {
	b   []byte
	err error
}

func (e *encoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }

func (e *encoder) string(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bytes(b []byte) {
	e.uint(uint64(len(b)))
	e.b = append(e.b, b...)
}

func (e *encoder) flags(fs ...bool) {
	var v uint64
	for i, f := range fs {
		if f {
			v |= 1 << i
		}
	}
	e.uint(v)
}

func (e *encoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	at := len(e.b)
	e.b = append(e.b, 0)
	b, err := t.AppendBinary(e.b)
	if err != nil {
		// A time whose zone offset is not whole minutes, or a year beyond
		// what time.Time's binary form holds: refuse rather than store
		// another instant.
		if e.err == nil {
			e.err = fmt.Errorf("time %v: %w", t, err)
		}
		return
	}
	e.b = b
	e.b[at] = byte(len(b) - at - 1)
}

// decoder reads a value from one string: every string field is a slice of
// it, so a payment costs one allocation for all its text.
type decoder struct {
	s   string
	i   int
	err error
}

var errCorrupt = errors.New("store: corrupt value")

func newDecoder(b []byte, tag byte) (*decoder, error) {
	if len(b) == 0 || b[0] != tag {
		return nil, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	return &decoder{s: string(b), i: 1}, nil
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or malformed at byte %d of %d", errCorrupt, d.i, len(d.s))
	}
	d.i = len(d.s)
}

func (d *decoder) uint() uint64 {
	v, n := uvarintString(d.s[d.i:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.i += n
	return v
}

func (d *decoder) int() int64 {
	u := d.uint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// count reads a slice or map length, which cannot exceed the bytes left:
// every element takes at least one.
func (d *decoder) count() int {
	n := d.uint()
	if n > uint64(len(d.s)-d.i) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) string() string {
	n := d.count()
	s := d.s[d.i : d.i+n]
	d.i += n
	return s
}

func (d *decoder) bytes() []byte {
	if s := d.string(); s != "" {
		return []byte(s)
	}
	return nil
}

func (d *decoder) flags(fs ...*bool) {
	v := d.uint()
	if v>>len(fs) != 0 {
		d.fail()
		return
	}
	for i, f := range fs {
		*f = v&(1<<i) != 0
	}
}

func (d *decoder) time() time.Time {
	s := d.string()
	if s == "" {
		return time.Time{}
	}
	var t time.Time
	if err := t.UnmarshalBinary([]byte(s)); err != nil {
		d.fail()
	}
	return t
}

func (d *decoder) atEnd() bool { return d.err == nil && d.i == len(d.s) }

func (d *decoder) end() error {
	if d.err == nil && d.i != len(d.s) {
		d.fail()
	}
	return d.err
}

// uvarintString is binary.Uvarint over a string, so decoding needs no
// []byte copy of the value.
func uvarintString(s string) (uint64, int) {
	var v uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		c := s[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -1
			}
			return v | uint64(c)<<shift, i + 1
		}
		v |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}
