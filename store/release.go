package store

import "time"

// Badger reads and writes its tables through mmap, so every table page it
// has touched (compaction reads and rewrites all of them) counts in the
// process's resident memory: 2.40 GiB of Caddy's 2.83 GiB RSS after
// 1,000,000 payments, for a store of 2.35 GiB. Those pages are the kernel's
// page cache; the mapping is only what makes them count against Caddy.
// Twice a second the store tells the kernel it no longer needs the
// mapped table pages (madvise MADV_DONTNEED on the tables' shared file
// mappings). The pages stay in the page cache, nothing is lost
// or written, and the next read of one maps it again with a minor fault:
// the same memory behaviour as a store that reads its files with pread.
const releaseInterval = 500 * time.Millisecond

func (s *Store) releaseLoop() {
	defer close(s.releaseDone)
	ticker := time.NewTicker(releaseInterval)
	defer ticker.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-ticker.C:
			if _, err := s.releaseMapped(); err != nil {
				s.log.Debug("releasing mapped table pages: " + err.Error())
			}
		}
	}
}
