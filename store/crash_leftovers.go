package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.uber.org/zap"
)

// removeEmptyLogs deletes the empty logs a crash can leave behind. Badger
// creates a memtable's (.mem) or the value log's (.vlog) file and only
// then sizes it; a kill -9 between the two leaves a zero-length file,
// on which Badger's Open fails (dgraph-io/badger#2207), so the first
// start after the crash fails. (That failed Open sizes the file, so a
// second start would get through, but only where something restarts
// Caddy.) An empty log holds no write and nothing can point into it, so
// deleting it loses nothing.
//
// It runs only while holding Badger's own directory lock, so it can never
// delete the log another running process has just created; if the lock
// is taken, it leaves everything for Open to report.
func removeEmptyLogs(dir string, log *zap.Logger) error {
	unlock, ok := lockDir(dir)
	if !ok {
		return nil
	}
	defer unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	var removed []string
	for _, e := range entries {
		if !e.Type().IsRegular() || !(strings.HasSuffix(e.Name(), ".mem") || strings.HasSuffix(e.Name(), ".vlog")) {
			continue
		}
		info, err := e.Info()
		if err != nil || info.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("removing the empty log %s a crash left: %w", e.Name(), err)
		}
		removed = append(removed, e.Name())
	}
	if len(removed) > 0 {
		log.Warn("removed empty logs left by a crash; they held no writes",
			zap.String("dir", dir), zap.Strings("files", removed))
	}
	return nil
}
