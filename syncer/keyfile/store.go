package keyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/keysync-dev/keysync/syncer/internal/mutant"
)

// StateFile is the ownership records' snapshot inside the staging directory; JournalFile
// holds the changes since the snapshot (one checksummed JSON object per line, fsynced per
// change) and is folded into the snapshot when the store opens and when it grows.
const (
	StateFile   = "state.json"
	JournalFile = "state.journal"
	LockFile    = "lock"
)

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
// version a kp-key file was unwrapped from (empty for type key, and while a kp-key file is
// being replaced: the file may then hold either version).
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
	// mount (Open proves it with a real rename) and outside every tree CRI-O walks. Default:
	// DefaultStagingDir(Dir).
	StagingDir string
	// Owner, when set, owns the keys directory and every key file.
	Owner *Owner
	// AfterStage, when set, runs after a file is fully staged and before it is renamed into
	// the tree. Tests use it to crash the process at the worst moment.
	AfterStage func(staged, final string)
	// OnStep, when set, runs after each step of a write (tests stop the writer there).
	OnStep func(step Step, final string)
}

// Step names a point in Put between two durable effects.
type Step string

// Steps of Put, in order.
const (
	StepRecorded Step = "recorded" // the ownership record (without a version) is durable
	StepStaged   Step = "staged"   // the staged file is complete and fsynced
	StepRenamed  Step = "renamed"  // the file is in the tree, its version not yet recorded
)

// DefaultStagingDir is "<keys-dir>/../../.keysync-staging": for /etc/crio/keys/synced it is
// /etc/crio/.keysync-staging, outside CRI-O's default decryption_keys_path (/etc/crio/keys) on
// the same mount when /etc/crio is mounted.
func DefaultStagingDir(dir string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(filepath.Clean(dir))), ".keysync-staging")
}

// Store writes, replaces and removes the synchronizer's key files. It is safe for concurrent
// use.
type Store struct {
	opts  Options
	mu    sync.Mutex
	state map[string]Record
	// bySecret indexes state: namespace+"\x00"+secret → file names.
	bySecret map[string]map[string]bool
	journal  *os.File
	entries  int      // lines in the journal
	lock     *os.File // flock on LockFile: one syncer per staging directory
	healed   []string
	// journalSize is the journal's length in whole lines; journalDirty says a failed append
	// may have left bytes past it.
	journalSize  int64
	journalDirty bool
}

// Open prepares the keys and staging directories (0700), checks that they do not nest and
// that a rename from one into the other works, removes staged leftovers and loads the
// ownership records, repairing damaged bookkeeping (see Healed).
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
	if err := removeLeftovers(opts.StagingDir, opts.Dir); err != nil {
		return nil, err
	}
	if err := probeRename(opts.StagingDir, opts.Dir); err != nil {
		return nil, err
	}
	s := &Store{opts: opts, state: map[string]Record{}, lock: lock}
	if err := s.loadState(); err != nil {
		return nil, err
	}
	s.bySecret = map[string]map[string]bool{}
	for name, rec := range s.state {
		s.index(name, rec)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.compactLocked(); err != nil {
		// A full disk must not keep the syncer from starting: go on with the journal as it is.
		if jerr := s.openJournalLocked(); jerr != nil {
			return nil, errors.Join(err, jerr)
		}
		s.healed = append(s.healed, fmt.Sprintf("state not compacted: %v", err))
	}
	ok = true
	return s, nil
}

// removeLeftovers removes what a crash may leave: staged files in the staging directory and
// an empty rename probe in the keys directory.
func removeLeftovers(staging, dir string) error {
	staged, _ := filepath.Glob(filepath.Join(staging, stagePattern))
	probes, _ := filepath.Glob(filepath.Join(dir, probePrefix+"*"))
	for _, f := range append(staged, probes...) {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to remove staged leftover: %w", err)
		}
	}
	return nil
}

// probePrefix names the empty directory Open renames from the staging directory into the keys
// directory and removes again: an empty directory, because CRI-O reads every file of the tree.
const probePrefix = ".stage-probe-"

// probeRename proves that rename(2) works from the staging to the keys directory. Device
// numbers are not enough: two bind mounts of one filesystem share them, yet a rename between
// them fails with EXDEV.
func probeRename(staging, dir string) error {
	p, err := os.MkdirTemp(staging, probePrefix+"*")
	if err != nil {
		return fmt.Errorf("failed to create rename probe in %s: %w", staging, err)
	}
	target := filepath.Join(dir, filepath.Base(p))
	if err := os.Rename(p, target); err != nil {
		_ = os.Remove(p)
		hint := ""
		if errors.Is(err, syscall.EXDEV) {
			hint = " (different filesystems or mounts: mount one common parent of both directories)"
		}
		return fmt.Errorf("staging directory %s cannot rename into keys directory %s%s: %w", staging, dir, hint, err)
	}
	if err := os.Remove(target); err != nil {
		return fmt.Errorf("failed to remove rename probe: %w", err)
	}
	return nil
}

// Healed lists what Open repaired in the bookkeeping (torn journal lines, a damaged state
// file); empty when nothing was wrong.
func (s *Store) Healed() []string { return s.healed }

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

// OwnedBy returns the records of the files of one Secret, by file name.
func (s *Store) OwnedBy(namespace, secret string) map[string]Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.bySecret[namespace+"\x00"+secret]
	out := make(map[string]Record, len(names))
	for n := range names {
		out[n] = s.state[n]
	}
	return out
}

func (s *Store) index(name string, rec Record) {
	k := rec.Namespace + "\x00" + rec.Secret
	if s.bySecret[k] == nil {
		s.bySecret[k] = map[string]bool{}
	}
	s.bySecret[k][name] = true
}

func (s *Store) unindex(name string, rec Record) {
	k := rec.Namespace + "\x00" + rec.Secret
	delete(s.bySecret[k], name)
	if len(s.bySecret[k]) == 0 {
		delete(s.bySecret, k)
	}
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
//
// The record is written twice around the rename: before it without a version (the name is
// owned before its file can appear, so a crash never leaves an owned file without a record),
// after it with rec.Source. A failure or a crash in between leaves a record that claims no
// version, so the next sync writes the file again; a record never claims a version the file
// does not hold.
func (s *Store) Put(name string, rec Record, data []byte) (bool, error) {
	if !IsName(name) {
		return false, fmt.Errorf("refusing to write %q: not a generated key file name", name)
	}
	if mutant.On(mutant.RemoveForeign) {
		s.removeForeign()
	}
	final := filepath.Join(s.opts.Dir, name)
	if s.matches(final, data) {
		return false, s.record(name, rec)
	}
	pending := rec
	pending.Source = ""
	if err := s.record(name, pending); err != nil {
		return false, err
	}
	s.step(StepRecorded, final)
	if err := s.stageAndRename(final, data); err != nil {
		return false, err
	}
	s.step(StepRenamed, final)
	if err := syncDir(s.opts.Dir); err != nil {
		return true, err
	}
	return true, s.record(name, rec)
}

func (s *Store) stageAndRename(final string, data []byte) error {
	if mutant.On(mutant.InPlace) {
		return writeInPlace(final, data)
	}
	if mutant.On(mutant.FollowSymlink) {
		if fi, err := os.Lstat(final); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return writeThroughSymlink(final, data)
		}
	}
	stagingDir := s.opts.StagingDir
	if mutant.On(mutant.TempLeftInTree) {
		stagingDir = s.opts.Dir
		leaveCrashedTemp(final, data)
	}
	f, err := os.CreateTemp(stagingDir, stagePattern)
	if err != nil {
		return fmt.Errorf("failed to create staged file: %w", err)
	}
	staged := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(staged)
		}
	}()
	mode := os.FileMode(0o600)
	if mutant.On(mutant.Mode0644) {
		mode = 0o644
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("failed to set mode of staged file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("failed to write staged file: %w", err)
	}
	if s.opts.Owner != nil {
		if err := f.Chown(s.opts.Owner.UID, s.opts.Owner.GID); err != nil {
			return fmt.Errorf("failed to set owner of staged file: %w", err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("failed to sync staged file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close staged file: %w", err)
	}
	if s.opts.AfterStage != nil {
		s.opts.AfterStage(staged, final)
	}
	s.step(StepStaged, final)
	if err := os.Rename(staged, final); err != nil {
		return fmt.Errorf("failed to rename key file into place: %w", err)
	}
	ok = true
	return nil
}

func (s *Store) step(st Step, final string) {
	if s.opts.OnStep != nil {
		s.opts.OnStep(st, final)
	}
}

// matches reports whether final is a regular file with exactly data, mode 0600 and the
// configured owner.
func (s *Store) matches(final string, data []byte) bool {
	fi, err := os.Lstat(final)
	if err != nil || !fi.Mode().IsRegular() || (fi.Mode().Perm() != 0o600 && !mutant.On(mutant.Mode0644)) || fi.Size() != int64(len(data)) {
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
	if mutant.On(mutant.RemoveForeign) {
		s.removeForeign()
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
	if cur, ok := s.state[name]; ok {
		s.unindex(name, cur)
	}
	delete(s.state, name)
	s.maybeCompactLocked()
	return removed, nil
}

// record stores rec for name (persisting the change when there is one).
func (s *Store) record(name string, rec Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.state[name]
	if ok && cur == rec {
		return nil
	}
	if err := s.appendLocked(journalEntry{Put: name, Record: &rec}); err != nil {
		return err
	}
	if ok {
		s.unindex(name, cur)
	}
	s.state[name] = rec
	s.index(name, rec)
	s.maybeCompactLocked()
	return nil
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
