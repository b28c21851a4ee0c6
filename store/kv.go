package store

import (
	"errors"

	"github.com/dgraph-io/badger/v4"
)

// kv is what a tx reads and writes through: a Badger transaction, or a
// recorder that lets several Updates share a commit (group commit) while
// each stays all-or-nothing.
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

// recorder is what an Update's function reads and writes through: a
// snapshot, plus the Update's own writes, which its later reads see. It
// notes the version of every key read from the snapshot, for the batcher to
// check before the commit (see groupcommit.go).
type recorder struct {
	snap   *badger.Txn
	reads  []readVersion
	seen   map[string]struct{} // keys in reads
	writes map[string][]byte   // nil value: deleted
	order  []string
}

// readVersion is a key as an Update read it: its version, or 0 if absent.
type readVersion struct {
	key     string
	version uint64
}

type write struct {
	key   string
	value []byte // nil: delete
}

func newRecorder(snap *badger.Txn) *recorder {
	return &recorder{snap: snap, seen: make(map[string]struct{}), writes: make(map[string][]byte)}
}

func (r *recorder) get(k []byte) ([]byte, error) {
	if v, ok := r.writes[string(k)]; ok {
		if v == nil {
			return nil, badger.ErrKeyNotFound
		}
		return append([]byte(nil), v...), nil
	}
	item, err := r.snap.Get(k)
	var version uint64
	switch {
	case err == nil:
		version = item.Version()
	case !errors.Is(err, badger.ErrKeyNotFound):
		return nil, err
	}
	if _, ok := r.seen[string(k)]; !ok {
		r.seen[string(k)] = struct{}{}
		r.reads = append(r.reads, readVersion{key: string(k), version: version})
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (r *recorder) set(k, v []byte) error {
	// A non-nil copy even when empty: nil means deleted.
	r.put(string(k), append(make([]byte, 0, len(v)), v...))
	return nil
}

func (r *recorder) del(k []byte) error {
	r.put(string(k), nil)
	return nil
}

func (r *recorder) put(k string, v []byte) {
	if _, seen := r.writes[k]; !seen {
		r.order = append(r.order, k)
	}
	r.writes[k] = v
}

// pending returns the writes in the order they were first made, and their
// size as the batcher counts it.
func (r *recorder) pending() ([]write, int) {
	ws := make([]write, len(r.order))
	size := 0
	for i, k := range r.order {
		ws[i] = write{key: k, value: r.writes[k]}
		size += len(k) + len(ws[i].value) + entryOverhead
	}
	return ws, size
}
