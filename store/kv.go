package store

import "github.com/dgraph-io/badger/v4"

// kv is what a tx reads and writes through: a Badger transaction, or an
// overlay on one that lets several Updates share a commit (group commit)
// while each stays all-or-nothing.
type kv interface {
	// get returns a copy of k's value, or badger.ErrKeyNotFound.
	get(k []byte) ([]byte, error)
	set(k, v []byte) error
	del(k []byte) error
}

// txnKV is a Badger transaction. Reads go through it so that Badger's
// conflict detection sees them.
type txnKV struct{ txn *badger.Txn }

func (t txnKV) get(k []byte) ([]byte, error) {
	item, err := t.txn.Get(k)
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (t txnKV) set(k, v []byte) error { return t.txn.Set(k, v) }
func (t txnKV) del(k []byte) error    { return t.txn.Delete(k) }

// overlay buffers one Update's writes on top of a shared transaction: its
// reads see its own writes first, then the transaction (which holds the
// writes of the Updates before it in the batch). Applied only if the Update
// succeeds, so a refused Update leaves the shared transaction as it was.
type overlay struct {
	base   *badger.Txn
	writes map[string][]byte // nil value: deleted
	order  []string
}

func newOverlay(base *badger.Txn) *overlay {
	return &overlay{base: base, writes: make(map[string][]byte)}
}

func (o *overlay) get(k []byte) ([]byte, error) {
	if v, ok := o.writes[string(k)]; ok {
		if v == nil {
			return nil, badger.ErrKeyNotFound
		}
		c := make([]byte, len(v))
		copy(c, v)
		return c, nil
	}
	return txnKV{o.base}.get(k)
}

func (o *overlay) set(k, v []byte) error {
	// A non-nil copy even when empty: nil means deleted.
	c := make([]byte, len(v))
	copy(c, v)
	o.put(string(k), c)
	return nil
}

func (o *overlay) del(k []byte) error {
	o.put(string(k), nil)
	return nil
}

func (o *overlay) put(k string, v []byte) {
	if _, seen := o.writes[k]; !seen {
		o.order = append(o.order, k)
	}
	o.writes[k] = v
}

// apply writes the buffered changes into the shared transaction.
func (o *overlay) apply() error {
	for _, k := range o.order {
		v := o.writes[k]
		var err error
		if v == nil {
			err = o.base.Delete([]byte(k))
		} else {
			err = o.base.Set([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
