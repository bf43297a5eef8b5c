package keyfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// StateFile is the ownership records' snapshot inside the staging directory; JournalFile
// holds the changes since the snapshot (one JSON object per line, fsynced per change) and is
// folded into the snapshot when the store opens and when it grows.
const (
	StateFile   = "state.json"
	JournalFile = "state.journal"
	LockFile    = "lock"
)

type journalEntry struct {
	Put    string  `json:"put,omitempty"`
	Delete string  `json:"del,omitempty"`
	Record *Record `json:"rec,omitempty"`
}

// stagePattern names staged files; Open removes leftovers of a crash.
const stagePattern = ".stage-*"

// Owner is an optional uid:gid for key files and the keys directory.
type Owner struct{ UID, GID int }

// ParseOwner parses "uid:gid" (numeric). An empty string means no owner change (nil).
func ParseOwner(s string) (*Owner, error) {
	if s == "" {
		return nil, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if !ok || err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return nil, fmt.Errorf("invalid owner %q: want numeric uid:gid", s)
	}
	return &Owner{UID: uid, GID: gid}, nil
}

// Record says which Secret entry an owned file came from. Source identifies the Secret
// version a kp-key file was unwrapped from (empty for type key).
type Record struct {
	Namespace string `json:"namespace"`
	Secret    string `json:"secret"`
	DataKey   string `json:"dataKey"`
	Source    string `json:"source,omitempty"`
}

// Options configure a Store.
type Options struct {
	// Dir is the keys directory (e.g. /etc/crio/keys/synced), created 0700.
	Dir string
	// StagingDir holds staged files and the state file. It must be on Dir's filesystem and
	// outside every tree CRI-O walks. Default: DefaultStagingDir(Dir).
	StagingDir string
	// Owner, when set, owns the keys directory and every key file.
	Owner *Owner
	// AfterStage, when set, runs after a file is fully staged and before it is renamed into
	// the tree. Tests use it to crash the process at the worst moment.
	AfterStage func(staged, final string)
}

// DefaultStagingDir is "<keys-dir>/../../.keysync-staging": for /etc/crio/keys/synced it is
// /etc/crio/.keysync-staging, outside CRI-O's default decryption_keys_path (/etc/crio/keys) on
// the same mount when /etc/crio is mounted.
func DefaultStagingDir(dir string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(dir))), ".keysync-staging")
}

// Store writes, replaces and removes the synchronizer's key files. It is safe for concurrent
// use.
type Store struct {
	opts    Options
	mu      sync.Mutex
	state   map[string]Record
	journal *os.File
	entries int      // lines in the journal
	lock    *os.File // flock on LockFile: one syncer per staging directory
}

// Open prepares the keys and staging directories (0700), checks that they share a
// filesystem and do not nest, removes staged leftovers and loads the ownership records.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("keys directory is required")
	}
	if opts.StagingDir == "" {
		opts.StagingDir = DefaultStagingDir(opts.Dir)
	}
	var err error
	if opts.Dir, err = filepath.Abs(opts.Dir); err != nil {
		return nil, fmt.Errorf("failed to resolve keys directory: %w", err)
	}
	if opts.StagingDir, err = filepath.Abs(opts.StagingDir); err != nil {
		return nil, fmt.Errorf("failed to resolve staging directory: %w", err)
	}
	for _, d := range []string{opts.Dir, opts.StagingDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create directory %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to set mode of %s: %w", d, err)
		}
	}
	if opts.Owner != nil {
		if err := os.Chown(opts.Dir, opts.Owner.UID, opts.Owner.GID); err != nil {
			return nil, fmt.Errorf("failed to set owner of %s: %w", opts.Dir, err)
		}
	}
	realDir, err := filepath.EvalSymlinks(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve keys directory: %w", err)
	}
	realStage, err := filepath.EvalSymlinks(opts.StagingDir)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve staging directory: %w", err)
	}
	if within(realStage, realDir) || within(realDir, realStage) {
		return nil, fmt.Errorf("staging directory %s and keys directory %s must not contain each other", opts.StagingDir, opts.Dir)
	}
	if err := sameFilesystem(realDir, realStage); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(opts.StagingDir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("failed to open lock file: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("staging directory %s is in use by another synchronizer: %w", opts.StagingDir, err)
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	leftovers, _ := filepath.Glob(filepath.Join(opts.StagingDir, stagePattern))
	for _, f := range leftovers {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("failed to remove staged leftover: %w", err)
		}
	}
	s := &Store{opts: opts, state: map[string]Record{}, lock: lock}
	data, err := os.ReadFile(filepath.Join(opts.StagingDir, StateFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("failed to read state file: %w", err)
	default:
		if err := json.Unmarshal(data, &s.state); err != nil {
			return nil, fmt.Errorf("failed to parse state file %s: %w", filepath.Join(opts.StagingDir, StateFile), err)
		}
	}
	if err := s.replay(); err != nil {
		return nil, err
	}
	for name := range s.state {
		if !IsName(name) {
			return nil, fmt.Errorf("state file %s lists an invalid name", filepath.Join(opts.StagingDir, StateFile))
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.compactLocked(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// replay applies the journal to the snapshot. A torn last line (a crash while appending) is
// ignored: its rename never happened.
func (s *Store) replay() error {
	data, err := os.ReadFile(filepath.Join(s.opts.StagingDir, JournalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to read state journal: %w", err)
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if len(line) == 0 {
			continue
		}
		var e journalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			if i == len(lines)-1 {
				break
			}
			return fmt.Errorf("failed to parse state journal line %d: %w", i+1, err)
		}
		switch {
		case e.Put != "" && e.Record != nil:
			s.state[e.Put] = *e.Record
		case e.Delete != "":
			delete(s.state, e.Delete)
		}
	}
	return nil
}

// Close releases the journal and the lock; the Store is unusable afterwards.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.journal == nil {
		return nil
	}
	err := errors.Join(s.journal.Close(), s.lock.Close())
	s.journal = nil
	return err
}

// Dir is the keys directory.
func (s *Store) Dir() string { return s.opts.Dir }

// StagingDir is the staging directory.
func (s *Store) StagingDir() string { return s.opts.StagingDir }

func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func sameFilesystem(a, b string) error {
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		return fmt.Errorf("failed to stat %s: %w", a, err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		return fmt.Errorf("failed to stat %s: %w", b, err)
	}
	if sa.Dev != sb.Dev {
		return fmt.Errorf("staging directory %s is not on the filesystem of keys directory %s: rename(2) would fail (mount a common parent)", b, a)
	}
	return nil
}

// Owned returns a copy of the ownership records, by file name.
func (s *Store) Owned() map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Record, len(s.state))
	for k, v := range s.state {
		out[k] = v
	}
	return out
}

// Lookup returns the record of an owned file and whether the file is present on disk.
func (s *Store) Lookup(name string) (Record, bool) {
	s.mu.Lock()
	rec, ok := s.state[name]
	s.mu.Unlock()
	if !ok {
		return Record{}, false
	}
	fi, err := os.Lstat(filepath.Join(s.opts.Dir, name))
	return rec, err == nil && fi.Mode().IsRegular()
}

// Count is the number of owned files present on disk.
func (s *Store) Count() int {
	n := 0
	for name := range s.Owned() {
		if fi, err := os.Lstat(filepath.Join(s.opts.Dir, name)); err == nil && fi.Mode().IsRegular() {
			n++
		}
	}
	return n
}

// Put makes the file name hold exactly data, owned by rec. It reports whether the file was
// (re)written: a file whose content, mode and owner already match is left alone. A new or
// changed file is staged in the staging directory (0600, fsynced) and renamed into the tree,
// so the tree only ever holds complete files.
func (s *Store) Put(name string, rec Record, data []byte) (bool, error) {
	if !IsName(name) {
		return false, fmt.Errorf("refusing to write %q: not a generated key file name", name)
	}
	final := filepath.Join(s.opts.Dir, name)
	if s.matches(final, data) {
		return false, s.record(name, rec)
	}
	if err := s.record(name, rec); err != nil {
		return false, err
	}
	f, err := os.CreateTemp(s.opts.StagingDir, stagePattern)
	if err != nil {
		return false, fmt.Errorf("failed to create staged file: %w", err)
	}
	staged := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(staged)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return false, fmt.Errorf("failed to set mode of staged file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return false, fmt.Errorf("failed to write staged file: %w", err)
	}
	if s.opts.Owner != nil {
		if err := f.Chown(s.opts.Owner.UID, s.opts.Owner.GID); err != nil {
			return false, fmt.Errorf("failed to set owner of staged file: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("failed to sync staged file: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("failed to close staged file: %w", err)
	}
	if s.opts.AfterStage != nil {
		s.opts.AfterStage(staged, final)
	}
	if err := os.Rename(staged, final); err != nil {
		return false, fmt.Errorf("failed to rename key file into place: %w", err)
	}
	ok = true
	if err := syncDir(s.opts.Dir); err != nil {
		return true, err
	}
	return true, nil
}

// matches reports whether final is a regular file with exactly data, mode 0600 and the
// configured owner.
func (s *Store) matches(final string, data []byte) bool {
	fi, err := os.Lstat(final)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || fi.Size() != int64(len(data)) {
		return false
	}
	if s.opts.Owner != nil {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || int(st.Uid) != s.opts.Owner.UID || int(st.Gid) != s.opts.Owner.GID {
			return false
		}
	}
	cur, err := os.ReadFile(final)
	return err == nil && bytes.Equal(cur, data)
}

// Remove deletes an owned file and then its record. It reports whether a file was removed.
// Names that are not owned are never touched.
func (s *Store) Remove(name string) (bool, error) {
	s.mu.Lock()
	_, owned := s.state[name]
	s.mu.Unlock()
	if !owned {
		return false, nil
	}
	removed := true
	if err := os.Remove(filepath.Join(s.opts.Dir, name)); errors.Is(err, fs.ErrNotExist) {
		removed = false
	} else if err != nil {
		return false, fmt.Errorf("failed to remove key file: %w", err)
	}
	if removed {
		if err := syncDir(s.opts.Dir); err != nil {
			return true, err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.appendLocked(journalEntry{Delete: name}); err != nil {
		return removed, err
	}
	delete(s.state, name)
	return removed, s.maybeCompactLocked()
}

// record stores rec for name (persisting the state file when it changes).
func (s *Store) record(name string, rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.state[name]; ok && cur == rec {
		return nil
	}
	if err := s.appendLocked(journalEntry{Put: name, Record: &rec}); err != nil {
		return err
	}
	s.state[name] = rec
	return s.maybeCompactLocked()
}

// appendLocked appends one change to the journal and fsyncs it.
func (s *Store) appendLocked(e journalEntry) error {
	if s.journal == nil {
		return errors.New("store is closed")
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("failed to encode state change: %w", err)
	}
	if _, err := s.journal.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("failed to append to state journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		return fmt.Errorf("failed to sync state journal: %w", err)
	}
	s.entries++
	return nil
}

func (s *Store) maybeCompactLocked() error {
	if s.entries < 1000+2*len(s.state) {
		return nil
	}
	return s.compactLocked()
}

// compactLocked writes the snapshot, then starts an empty journal.
func (s *Store) compactLocked() error {
	if err := s.saveLocked(); err != nil {
		return err
	}
	if s.journal != nil {
		_ = s.journal.Close()
	}
	f, err := os.OpenFile(filepath.Join(s.opts.StagingDir, JournalFile), os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open state journal: %w", err)
	}
	s.journal, s.entries = f, 0
	return syncDir(s.opts.StagingDir)
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory: %w", err)
	}
	return nil
}

// Len is the number of owned files (records).
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.state)
}
