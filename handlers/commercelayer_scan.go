package handlers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// scanCommerceLayer reads a document in one pass over its bytes, where
// encoding/json (parseCommerceLayer) takes several: a validation pass per
// Unmarshal, the attributes decoded twice, into a struct and into a map,
// and the map encoded again for the natural key. That was a fifth of the
// CPU of a replayed authorize.
//
// It only answers for documents whose meaning it is sure of, as
// encoding/json would read them; ok false sends the body to
// parseCommerceLayer, which is the reference and gives every error. So it
// gives up on whatever encoding/json reads in ways not worth copying:
// invalid JSON (for the error), escapes in strings it keeps, keys that are
// not plain lowercase ASCII where encoding/json matches struct fields
// without regard to case, a field given twice, values of the wrong type,
// and strings json.Marshal would write differently from how they came.
func scanCommerceLayer(body []byte) (doc *clDoc, ok bool) {
	s := scanner{b: body}
	var (
		top      clTop
		seenData bool
	)
	s.ws()
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "data":
			if seenData {
				return false
			}
			seenData = true
			if s.null() {
				return true
			}
			top.data = new(clResource)
			return s.resource(top.data)
		case "included":
			if top.included != nil {
				return false
			}
			top.included = make([]clResource, 0, 4)
			if s.null() {
				return true
			}
			return s.array(func() bool {
				top.included = append(top.included, clResource{})
				if s.null() {
					return true
				}
				return s.resource(&top.included[len(top.included)-1])
			})
		}
		return s.skip()
	})
	if s.ws(); !ok || s.i != len(s.b) || top.data == nil {
		return nil, false
	}
	return top.doc()
}

// clTop and clResource hold the parts of a document as spans of its bytes,
// for the parts read only when needed.
type clTop struct {
	data     *clResource
	included []clResource
}

type clResource struct {
	id, typ    string
	attributes []byte // the raw value; nil when absent
	orderData  []byte // relationships.order.data, raw; nil when absent
}

func (t *clTop) doc() (*clDoc, bool) {
	d := &clDoc{dataID: t.data.id, dataType: t.data.typ}
	if a := t.data.attributes; a != nil {
		s := scanner{b: a}
		var canon canonical
		if !s.attributes(&d.attrs, &canon) {
			return nil, false
		}
		d.attrsOK = true
		sum := sha256.Sum256(canon.bytes())
		d.attrsDigest = hex.EncodeToString(sum[:])
	}

	want := ""
	if ref := t.data.orderData; ref != nil {
		s := scanner{b: ref}
		if !s.null() {
			var typ string
			var seen fieldSet
			ok := s.object(func(key []byte) bool {
				switch string(key) {
				case "id":
					return seen.first(0) && s.stringField(&want)
				case "type":
					return seen.first(1) && s.stringField(&typ)
				}
				return s.skip()
			})
			if !ok {
				return nil, false
			}
		}
	}
	for i := range t.included {
		r := &t.included[i]
		if r.typ != "orders" || (want != "" && r.id != want) {
			continue
		}
		if r.attributes == nil {
			d.orderErr = errOrderAttributes()
			return d, true
		}
		o := new(clOrderAttributes)
		if s := (scanner{b: r.attributes}); !s.null() && !s.order(o) {
			return nil, false
		}
		d.order, d.orderID = o, r.id
		return d, true
	}
	d.orderErr = invalid("the order is not in included")
	return d, true
}

// scanner walks JSON text. Every method that reads a value validates it and
// answers false where the scan must give up.
type scanner struct {
	b     []byte
	i     int
	depth int
}

// maxDepth is far below encoding/json's limit; deeper documents go to it.
// So do objects with more than maxMembers keys whose repeats matter.
const (
	maxDepth   = 64
	maxMembers = 64
)

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) literal(lit string) bool {
	if s.peek() != lit[0] || len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// null consumes a null, if one is next.
func (s *scanner) null() bool { return s.literal("null") }

// object reads an object, calling member for each key with the scanner at
// its value, which member must read. Keys must be plain lowercase ASCII.
func (s *scanner) object(member func(key []byte) bool) bool {
	return s.members(true, member)
}

func (s *scanner) members(lowercaseKeys bool, member func(key []byte) bool) bool {
	if s.peek() != '{' || s.depth >= maxDepth {
		return false
	}
	s.i++
	s.depth++
	defer func() { s.depth-- }()
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		key, ok := s.plainString()
		if !ok || (lowercaseKeys && !lowercaseASCII(key)) {
			return false
		}
		if s.peek() != ':' {
			return false
		}
		s.i++
		if !member(key) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) array(elem func() bool) bool {
	if s.peek() != '[' || s.depth >= maxDepth {
		return false
	}
	s.i++
	s.depth++
	defer func() { s.depth-- }()
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// fieldSet notes which of a struct's fields an object has set: the scan
// gives up on a second one (encoding/json would take the last).
type fieldSet uint

func (f *fieldSet) first(field uint) bool {
	if *f&(1<<field) != 0 {
		return false
	}
	*f |= 1 << field
	return true
}

// raw reads any value and returns its text.
func (s *scanner) raw(dst *[]byte) bool {
	start := s.skipStart()
	if !s.skip() {
		return false
	}
	*dst = s.b[start:s.i]
	return true
}

// resource reads a jsonAPIResource.
func (s *scanner) resource(r *clResource) bool {
	var seen fieldSet
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			return seen.first(0) && s.stringField(&r.id)
		case "type":
			return seen.first(1) && s.stringField(&r.typ)
		case "attributes":
			return seen.first(2) && s.raw(&r.attributes)
		case "relationships":
			return seen.first(3) && s.relationships(r)
		}
		return s.skip()
	})
}

// relationships reads a map of jsonAPIRelationship, keeping the order's
// data. encoding/json matches a map's keys exactly, and the last of two
// wins, so the scan gives up on a name given twice.
func (s *scanner) relationships(r *clResource) bool {
	if s.null() {
		return true
	}
	var names [][]byte
	return s.object(func(name []byte) bool {
		if len(names) >= maxMembers || slices.ContainsFunc(names, func(n []byte) bool { return bytes.Equal(n, name) }) {
			return false
		}
		names = append(names, name)
		if s.null() {
			return true
		}
		var seen fieldSet
		return s.object(func(key []byte) bool {
			if string(key) != "data" {
				return s.skip()
			}
			var data []byte
			if !seen.first(0) || !s.raw(&data) {
				return false
			}
			if string(name) == "order" {
				r.orderData = data
			}
			return true
		})
	})
}

// attributes reads data.attributes into attrs and its canonical form.
func (s *scanner) attributes(attrs *clAttributes, c *canonical) bool {
	var seen fieldSet
	return s.object(func(key []byte) bool {
		start := s.skipStart()
		var ok bool
		switch string(key) {
		case "payment_source_token":
			ok = seen.first(0) && s.stringField(&attrs.PaymentSourceToken)
		case "token":
			ok = seen.first(1) && s.stringField(&attrs.Token)
		case "currency_code":
			ok = seen.first(2) && s.stringField(&attrs.CurrencyCode)
		case "amount_cents":
			ok = seen.first(3) && s.numberField(&attrs.AmountCents)
		case "capture_amount_cents":
			ok = seen.first(4) && s.numberField(&attrs.CaptureAmountCents)
		case "refund_amount_cents":
			ok = seen.first(5) && s.numberField(&attrs.RefundAmountCents)
		default:
			ok = true
		}
		if !ok {
			return false
		}
		s.i = start // read the value again, for the canonical form
		if slices.Contains(timestampAttributes, string(key)) {
			return c.once(key) && s.skip()
		}
		return c.member(s, key)
	})
}

// order reads an included order's attributes.
func (s *scanner) order(o *clOrderAttributes) bool {
	var seen fieldSet
	return s.object(func(key []byte) bool {
		switch string(key) {
		case "number":
			var number []byte
			if !seen.first(0) || !s.raw(&number) {
				return false
			}
			o.Number = number
			return true
		case "currency_code":
			return seen.first(1) && s.stringField(&o.CurrencyCode)
		case "customer_email":
			return seen.first(2) && s.stringField(&o.CustomerEmail)
		case "total_amount_with_taxes_cents":
			return seen.first(3) && s.numberField(&o.TotalAmountWithTaxesCents)
		}
		return s.skip()
	})
}

// stringField reads what encoding/json puts in a string field: a string
// (here without escapes), or null, which leaves it as it was.
func (s *scanner) stringField(dst *string) bool {
	if s.null() {
		return true
	}
	v, ok := s.plainString()
	if ok {
		*dst = string(v)
	}
	return ok
}

// numberField reads what encoding/json puts in a *json.Number field: a
// number literal, or null for none. (A number in a string, which
// encoding/json also takes, goes to it.)
func (s *scanner) numberField(dst **json.Number) bool {
	if s.null() {
		return true
	}
	lit, ok := s.number()
	if ok {
		n := json.Number(lit)
		*dst = &n
	}
	return ok
}

// skipStart is where the next value starts.
func (s *scanner) skipStart() int {
	s.ws()
	return s.i
}

// skip reads any value.
func (s *scanner) skip() bool {
	switch s.peek() {
	case '{':
		return s.members(false, func([]byte) bool { return s.skip() })
	case '[':
		return s.array(s.skip)
	case '"':
		return s.anyString()
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.null()
	}
	_, ok := s.number()
	return ok
}

// plainString reads a string with no escapes, whose text is valid UTF-8:
// what encoding/json would decode it to is then its bytes.
func (s *scanner) plainString() ([]byte, bool) {
	if s.peek() != '"' {
		return nil, false
	}
	start := s.i + 1
	ascii := true
	for i := start; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			v := s.b[start:i]
			if !ascii && !utf8.Valid(v) {
				return nil, false
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// anyString reads a valid string, escapes and all.
func (s *scanner) anyString() bool {
	if s.peek() != '"' {
		return false
	}
	for i := s.i + 1; i < len(s.b); i++ {
		switch c := s.b[i]; {
		case c == '"':
			s.i = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i >= len(s.b) {
				return false
			}
			switch s.b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s.b) {
					return false
				}
				for _, h := range s.b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

// number reads a number literal by JSON's grammar.
func (s *scanner) number() (string, bool) {
	s.ws()
	b, start, i := s.b, s.i, s.i
	digits := func() bool {
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return "", false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return "", false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return "", false
		}
	}
	s.i = i
	return string(b[start:i]), true
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func lowercaseASCII(key []byte) bool {
	for i := range len(key) {
		if c := key[i]; c >= utf8.RuneSelf || c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// canonical builds the text json.Marshal writes for an object decoded into
// map[string]any with numbers kept as written: keys sorted by their bytes,
// no whitespace, strings and numbers as they came. It gives up on a key
// given twice (encoding/json keeps the last) and on strings json.Marshal
// would escape.
type canonical struct {
	members []canonicalMember
	left    [][]byte // keys read but left out
}

type canonicalMember struct {
	key, value []byte
}

// once says whether key is new to the object. Keys are looked up by
// scanning, so an object with many of them goes to encoding/json.
func (c *canonical) once(key []byte) bool {
	if len(c.members)+len(c.left) >= maxMembers ||
		slices.ContainsFunc(c.left, func(k []byte) bool { return bytes.Equal(k, key) }) ||
		slices.ContainsFunc(c.members, func(m canonicalMember) bool { return bytes.Equal(m.key, key) }) {
		return false
	}
	c.left = append(c.left, key)
	return true
}

// member reads key's value at s into c.
func (c *canonical) member(s *scanner, key []byte) bool {
	if !c.once(key) || !marshalsAsIs(key) {
		return false
	}
	c.left = c.left[:len(c.left)-1]
	v, ok := canonicalValue(s, nil)
	if ok {
		c.members = append(c.members, canonicalMember{key, v})
	}
	return ok
}

func (c *canonical) bytes() []byte {
	return appendCanonicalObject(nil, c.members)
}

func appendCanonicalObject(out []byte, ms []canonicalMember) []byte {
	slices.SortFunc(ms, func(a, b canonicalMember) int { return bytes.Compare(a.key, b.key) })
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, m.key...)
		out = append(out, '"', ':')
		out = append(out, m.value...)
	}
	return append(out, '}')
}

// canonicalValue appends the canonical text of the value at s to out.
func canonicalValue(s *scanner, out []byte) ([]byte, bool) {
	switch s.peek() {
	case '{':
		var nested canonical
		ok := s.members(false, func(key []byte) bool { return nested.member(s, key) })
		if !ok {
			return nil, false
		}
		return appendCanonicalObject(out, nested.members), true
	case '[':
		out = append(out, '[')
		first := true
		ok := s.array(func() bool {
			if !first {
				out = append(out, ',')
			}
			first = false
			var ok bool
			out, ok = canonicalValue(s, out)
			return ok
		})
		return append(out, ']'), ok
	case '"':
		v, ok := s.plainString()
		if !ok || !marshalsAsIs(v) {
			return nil, false
		}
		out = append(out, '"')
		out = append(out, v...)
		return append(out, '"'), true
	case 't':
		return append(out, "true"...), s.literal("true")
	case 'f':
		return append(out, "false"...), s.literal("false")
	case 'n':
		return append(out, "null"...), s.null()
	}
	lit, ok := s.number()
	return append(out, lit...), ok
}

// marshalsAsIs says whether json.Marshal writes string v as its bytes
// between quotes: no character it escapes (it escapes <, > and & for HTML,
// and U+2028 and U+2029 for JavaScript). v is valid UTF-8 without control
// characters, quotes or backslashes, from plainString.
func marshalsAsIs(v []byte) bool {
	return !bytes.ContainsAny(v, "<>&\u2028\u2029")
}
