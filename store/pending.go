package store

import (
	"context"

	"github.com/dgraph-io/badger/v4"
)

// OpenPayments lists the ids of payments with open transactions, for the
// reconciler to resume after a restart. It reads the q/ index keys only, so
// it costs nothing per closed payment.
func (s *Store) OpenPayments(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(iterOptions(prefixOpen, false))
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			ids = append(ids, string(it.Item().Key()[len(prefixOpen):]))
		}
		return nil
	})
	return ids, err
}
