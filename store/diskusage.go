package store

import (
	"io/fs"
	"path/filepath"
)

// DiskUsage reports the bytes the store occupies on disk: lsm for the LSM
// tables, vlog for the value log and the memtables' write-ahead logs.
//
// It measures the directory itself rather than using Badger's Size, which
// is refreshed only once a minute, ignores the write-ahead logs, and counts
// the active value-log file at its preallocated size (twice
// ValueLogFileSize), mostly holes.
func (s *Store) DiskUsage() (lsm, vlog int64) {
	filepath.WalkDir(s.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // a file compacted away mid-walk is not an error
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		switch filepath.Ext(path) {
		case ".sst":
			lsm += allocated(info)
		case ".vlog", ".mem":
			vlog += allocated(info)
		}
		return nil
	})
	return lsm, vlog
}
