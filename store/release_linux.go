package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/dgraph-io/badger/v4"
)

// releaseMapped drops the mapped pages of every live table from Caddy's
// resident set, and returns how many bytes of mappings it advised.
//
// MADV_DONTNEED is safe on a shared file mapping (the data stays in the
// page cache) but would zero private anonymous memory. So it is only ever
// applied to a range that is certainly still the table's mapping: the
// table is held open by an iterator (Badger unmaps a table only when its
// last reference goes), and it was live both before and after the iterator
// took its references, so it is one of the tables the iterator holds.
func (s *Store) releaseMapped() (int64, error) {
	if err := s.acquire(); err != nil {
		return 0, nil
	}
	defer s.release()
	before := tableIDs(s.db)
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{AllVersions: true})
	defer it.Close()
	held := make(map[string]bool)
	for id := range tableIDs(s.db) {
		if before[id] {
			held[filepath.Join(s.mappedDir, fmt.Sprintf("%06d.sst", id))] = true
		}
	}
	if len(held) == 0 {
		return 0, nil
	}
	maps, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	defer maps.Close()
	var advised int64
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		start, end, path, ok := parseMapsLine(sc.Bytes())
		if !ok || !held[path] {
			continue
		}
		_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, start, end-start, syscall.MADV_DONTNEED)
		if errno != 0 {
			return advised, fmt.Errorf("madvise %s: %w", filepath.Base(path), errno)
		}
		advised += int64(end - start)
	}
	return advised, sc.Err()
}

func tableIDs(db *badger.DB) map[uint64]bool {
	ids := make(map[uint64]bool)
	for _, t := range db.Tables() {
		ids[t.ID] = true
	}
	return ids
}

// parseMapsLine reads "start-end perms offset dev inode [path]" from a line
// of /proc/self/maps; path is empty for an anonymous mapping.
func parseMapsLine(line []byte) (start, end uintptr, path string, ok bool) {
	fields := bytes.Fields(line)
	if len(fields) < 5 {
		return 0, 0, "", false
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	if !found {
		return 0, 0, "", false
	}
	a, err1 := strconv.ParseUint(string(lo), 16, 64)
	b, err2 := strconv.ParseUint(string(hi), 16, 64)
	if err1 != nil || err2 != nil || b <= a {
		return 0, 0, "", false
	}
	// A path may contain spaces: it is everything from its first slash.
	idx := bytes.IndexByte(line, '/')
	if idx < 0 {
		return uintptr(a), uintptr(b), "", true
	}
	return uintptr(a), uintptr(b), string(line[idx:]), true
}
