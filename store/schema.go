package store

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// checkSchema stamps a new database with schemaVersion, upgrades one of
// schemaVersionJSON, and refuses any other: reading a layout this build does
// not know could silently lose payments or deliver messages twice.
func checkSchema(db *badger.DB, dir string) error {
	return db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(keySchema)
		if errors.Is(err, badger.ErrKeyNotFound) {
			if !isEmpty(txn) {
				return fmt.Errorf("storage %s holds data but no paybridge schema version; is it another program's Badger directory?", dir)
			}
			return txn.Set(keySchema, []byte(schemaVersion))
		}
		if err != nil {
			return fmt.Errorf("store: reading schema version: %w", err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("store: reading schema version: %w", err)
		}
		switch string(v) {
		case schemaVersion:
			return nil
		case schemaVersionJSON:
			// Its JSON values are still read. The new stamp keeps builds
			// that only read JSON away from the binary values this one
			// writes.
			return txn.Set(keySchema, []byte(schemaVersion))
		}
		return fmt.Errorf("storage %s has schema version %q but this build only knows %q and %q (was it written by a newer paybridge?)", dir, v, schemaVersionJSON, schemaVersion)
	})
}

func isEmpty(txn *badger.Txn) bool {
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Rewind()
	return !it.Valid()
}
