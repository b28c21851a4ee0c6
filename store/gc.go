package store

import (
	"errors"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"
)

// Badger never reclaims value-log space on its own: rewritten payments and
// delivered messages leave garbage that only RunValueLogGC removes.
func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-ticker.C:
			s.collectGarbage()
		}
	}
}

// collectGarbage rewrites value-log files while at least half of one is
// garbage; each call handles one file, so it repeats until Badger finds
// nothing worth rewriting.
func (s *Store) collectGarbage() {
	for {
		select {
		case <-s.stopGC:
			return
		default:
		}
		err := s.db.RunValueLogGC(0.5)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("value-log garbage collection failed", zap.Error(err))
		}
		return
	}
}
