package keyfile

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The ownership state is a snapshot (StateFile, replaced atomically) plus a journal of the
// changes since (JournalFile). Every journal line carries a CRC-32C of its JSON:
//
//	<8 hex digits> <json>\n
//
// so a line that a short write tore, or that anything else damaged, is recognised and skipped
// wherever it is; the store then compacts (new snapshot, empty journal). Skipping a torn line
// is exact: an append that did not complete returned an error, so its change never took
// effect. The bookkeeping can therefore always be opened: the worst case (a damaged snapshot)
// is set aside and the syncer forgets its files, which it then never prunes (safe side).

type journalEntry struct {
	Put    string  `json:"put,omitempty"`
	Delete string  `json:"del,omitempty"`
	Record *Record `json:"rec,omitempty"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

func encodeEntry(e journalEntry) ([]byte, error) {
	js, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("failed to encode state change: %w", err)
	}
	line := make([]byte, 0, len(js)+10)
	line = fmt.Appendf(line, "%08x ", crc32.Checksum(js, crcTable))
	line = append(line, js...)
	return append(line, '\n'), nil
}

// decodeEntry reads one journal line (without its newline). Lines without a checksum, from
// journals written before checksums, are accepted when they are whole JSON objects.
func decodeEntry(line []byte) (journalEntry, bool) {
	var e journalEntry
	js := line
	if len(line) > 9 && line[8] == ' ' {
		sum, err := hex.DecodeString(string(line[:8]))
		if err != nil {
			return e, false
		}
		js = line[9:]
		want := uint32(sum[0])<<24 | uint32(sum[1])<<16 | uint32(sum[2])<<8 | uint32(sum[3])
		if crc32.Checksum(js, crcTable) != want {
			return e, false
		}
	} else if len(line) == 0 || line[0] != '{' {
		return e, false
	}
	if err := json.Unmarshal(js, &e); err != nil {
		return e, false
	}
	if (e.Put == "") == (e.Delete == "") || (e.Put != "" && e.Record == nil) {
		return e, false
	}
	return e, true
}

// loadState reads the snapshot and replays the journal into s.state, skipping and reporting
// what is damaged. Only an unreadable file (I/O error) is an error.
func (s *Store) loadState() error {
	statePath := filepath.Join(s.opts.StagingDir, StateFile)
	data, err := os.ReadFile(statePath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("failed to read state file: %w", err)
	default:
		if err := json.Unmarshal(data, &s.state); err != nil {
			s.state = map[string]Record{}
			aside := statePath + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
			if rerr := os.Rename(statePath, aside); rerr != nil {
				return fmt.Errorf("failed to set aside damaged state file: %w", rerr)
			}
			s.healed = append(s.healed, fmt.Sprintf("state file %s is damaged (%v): set aside as %s; files it listed are no longer pruned", statePath, err, filepath.Base(aside)))
		}
	}
	jpath := filepath.Join(s.opts.StagingDir, JournalFile)
	data, err = os.ReadFile(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read state journal: %w", err)
	}
	skipped := 0
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		e, ok := decodeEntry(line)
		if !ok {
			if i < len(lines)-1 { // a torn last line is the ordinary trace of a crash
				skipped++
			}
			continue
		}
		if e.Put != "" {
			s.state[e.Put] = *e.Record
		} else {
			delete(s.state, e.Delete)
		}
	}
	if skipped > 0 {
		s.healed = append(s.healed, fmt.Sprintf("state journal had %d damaged line(s) (torn by a failed write): skipped, journal compacted", skipped))
	}
	// Only whole lines stay: an append after a torn tail would otherwise be glued to it.
	s.journalSize = int64(bytes.LastIndexByte(data, '\n') + 1)
	for name := range s.state {
		if !IsName(name) {
			delete(s.state, name)
			s.healed = append(s.healed, "state lists an invalid file name: record dropped")
		}
	}
	return nil
}

// appendLocked appends one change to the journal and fsyncs it. A failed append (disk full)
// is cut off again, so that the next append starts a line of its own.
func (s *Store) appendLocked(e journalEntry) error {
	if s.journal == nil {
		return errors.New("store is closed")
	}
	line, err := encodeEntry(e)
	if err != nil {
		return err
	}
	if s.journalDirty {
		if err := s.journal.Truncate(s.journalSize); err != nil {
			return fmt.Errorf("failed to cut a torn line off the state journal: %w", err)
		}
		s.journalDirty = false
	}
	if _, err := s.journal.Write(line); err != nil {
		if terr := s.journal.Truncate(s.journalSize); terr != nil {
			s.journalDirty = true
		}
		return fmt.Errorf("failed to append to state journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("failed to sync state journal: %w", err)
	}
	s.journalSize += int64(len(line))
	s.entries++
	return nil
}

func (s *Store) maybeCompactLocked() {
	if s.entries < 1000+2*len(s.state) {
		return
	}
	// Best effort: a journal that cannot be compacted (disk full) stays valid as it is.
	_ = s.compactLocked()
}

// compactLocked writes the snapshot, then starts an empty journal. On failure the old journal
// stays in use (replaying it over the new snapshot gives the same state).
func (s *Store) compactLocked() error {
	if err := s.saveLocked(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.opts.StagingDir, JournalFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open state journal: %w", err)
	}
	if s.journal != nil {
		_ = s.journal.Close()
	}
	s.journal, s.entries, s.journalSize, s.journalDirty = f, 0, 0, false
	return syncDir(s.opts.StagingDir)
}

// openJournalLocked opens the existing journal for appending, cut to its whole lines.
func (s *Store) openJournalLocked() error {
	f, err := os.OpenFile(filepath.Join(s.opts.StagingDir, JournalFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open state journal: %w", err)
	}
	if err := f.Truncate(s.journalSize); err != nil {
		f.Close()
		return fmt.Errorf("failed to cut a torn line off the state journal: %w", err)
	}
	s.journal = f
	return nil
}

// saveLocked writes the state file atomically inside the staging directory.
func (s *Store) saveLocked() error {
	data, err := json.MarshalIndent(s.state, "", " ")
	if err != nil {
		return fmt.Errorf("failed to encode state: %w", err)
	}
	f, err := os.CreateTemp(s.opts.StagingDir, stagePattern)
	if err != nil {
		return fmt.Errorf("failed to create state file: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("failed to write state file: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.opts.StagingDir, StateFile)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("failed to replace state file: %w", err)
	}
	return syncDir(s.opts.StagingDir)
}
