package app_test

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/syncer/internal/testkeys"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	corev1 "k8s.io/api/core/v1"
)

const typeKey, typeKP = corev1.SecretType(kpkey.SecretTypeKey), corev1.SecretType(kpkey.SecretTypeKPKey)

func kpData(e *env, t testing.TB, pem []byte) map[string][]byte {
	return map[string][]byte{kpkey.RootKeyIDKey: []byte(e.kp.RootKeyID), kpkey.CiphertextKey: []byte(e.kp.Ciphertext(t, pem))}
}

func ino(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func assertCleanTree(t testing.TB, root string) {
	t.Helper()
	problems, err := crikeys.Audit(root)
	if err != nil || len(problems) > 0 {
		t.Errorf("CRI-O would fail on the keys tree: %v %v", problems, err)
	}
	if _, err := crikeys.LoadDir(root); err != nil {
		t.Errorf("crikeys.LoadDir: %v", err)
	}
}

// TestFollowsSecrets: create, update and delete Secrets of both types against a real API
// server and a real mockkp; the files follow, Events and metrics say what happened.
func TestFollowsSecrets(t *testing.T) {
	e := newEnv(t)
	foreign := filepath.Join(e.keys, "admin-put-this.pem")
	k1, k2, sec1, kpPEM := testkeys.PKCS8(t), testkeys.PKCS8(t), testkeys.SEC1(t), testkeys.RSA(t)
	if err := os.MkdirAll(e.keys, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, k2, 0o600); err != nil {
		t.Fatal(err)
	}
	c := e.start(t)
	fa, fec := filepath.Join(e.keys, keyfile.Name(ns, "app", "a.pem")), filepath.Join(e.keys, keyfile.Name(ns, "app", "ec.pem"))
	fkp := filepath.Join(e.keys, keyfile.Name(ns, "wrapped", "kp-key"))
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }

	// Create.
	e.put(t, "app", typeKey, map[string][]byte{"a.pem": k1, "ec.pem": sec1})
	waitFor(t, 10*time.Second, "app's files", func() bool { return read(fa) == string(k1) && read(fec) != "" })
	if !strings.HasPrefix(read(fec), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("SEC1 key not written as PKCS#8")
	}
	for _, p := range []string{fa, fec} {
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", p, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(e.keys); fi.Mode().Perm() != 0o700 {
		t.Errorf("keys dir mode %v", fi.Mode().Perm())
	}
	ev := e.waitEvent(t, "app", "KeySynced")
	if ev.Source.Host != "node-1" || !strings.Contains(ev.Message, "node-1") {
		t.Errorf("KeySynced Event does not name the node: %+v", ev.Source)
	}

	// kp-key before any keyprotect-config: it waits, visibly.
	e.put(t, "wrapped", typeKP, kpData(e, t, kpPEM))
	e.waitEvent(t, "wrapped", "ConfigMissing")
	if _, err := os.Stat(fkp); !os.IsNotExist(err) {
		t.Fatalf("kp-key file written without a config: %v", err)
	}
	// The config arrives: applied live.
	e.configSecret(t)
	waitFor(t, 10*time.Second, "kp-key file", func() bool { return read(fkp) == string(kpPEM) })
	e.waitEvent(t, "wrapped", "KeySynced")

	// A bad Secret: rejected, nothing written, the rest untouched.
	e.put(t, "bad", typeKey, map[string][]byte{"pub.pem": testkeys.Public(t)})
	rej := e.waitEvent(t, "bad", "KeyRejected")
	if strings.Contains(rej.Message, "PUBLIC KEY") {
		t.Errorf("Event quotes key material")
	}

	// Update: atomic replace of a.pem, ec.pem untouched.
	inoEC := ino(t, fec)
	e.put(t, "app", typeKey, map[string][]byte{"a.pem": k2, "ec.pem": sec1})
	waitFor(t, 10*time.Second, "a.pem updated", func() bool { return read(fa) == string(k2) })
	if ino(t, fec) != inoEC {
		t.Errorf("unchanged ec.pem was rewritten")
	}

	// Transient Key Protect failures: the previous file stays, the syncer retries with
	// backoff, and the new version lands once Key Protect recovers.
	if err := e.kp.Server.AddFault(mockkp.Fault{Op: mockkp.OpUnwrap, Kind: mockkp.FaultStatus, Status: http.StatusServiceUnavailable, Count: 1000}); err != nil {
		t.Fatal(err)
	}
	kpPEM2 := testkeys.PKCS8(t)
	e.put(t, "wrapped", typeKP, kpData(e, t, kpPEM2))
	e.waitEvent(t, "wrapped", "UnwrapFailed")
	time.Sleep(300 * time.Millisecond)
	if read(fkp) != string(kpPEM) {
		t.Errorf("previous kp-key file not kept through transient failures")
	}
	before := e.kp.Server.Requests(mockkp.OpUnwrap)
	e.kp.Server.ClearFaults()
	waitFor(t, 15*time.Second, "kp-key file after recovery", func() bool { return read(fkp) == string(kpPEM2) })
	if before < 3 {
		t.Errorf("only %d unwrap requests during the outage: no retries", before)
	}

	// Delete.
	e.del(t, "app")
	e.del(t, "wrapped")
	waitFor(t, 10*time.Second, "only the foreign file left", func() bool {
		got := tree(t, e.keys)
		return len(got) == 1 && got[filepath.Base(foreign)] == string(k2)
	})
	assertCleanTree(t, filepath.Join(e.root, "keys"))
	waitFor(t, 5*time.Second, "keys_on_disk 0", func() bool { return c.metric("keysync_syncer_keys_on_disk") == 0 })
	if v := c.metric("keysync_syncer_secret_to_file_seconds_count"); v < 3 {
		t.Errorf("latency histogram count %v, want >= 3", v)
	}
	if v := c.metric(`keysync_syncer_errors_total`); v < 2 {
		t.Errorf("errors_total %v, want rejected + transient", v)
	}
	if strings.Contains(c.log.String(), "PRIVATE KEY") || strings.Contains(c.log.String(), e.kp.APIKey) {
		t.Errorf("log holds key material")
	}
	c.stop()
}

// TestRestartNeverRewritesAndPrunesOnlyItsOwn: after a restart the full resync leaves every
// unchanged file alone (same inode, no unwrap), removes the files of a Secret deleted while
// the syncer was down, and keeps a file a person put in the tree.
func TestRestartNeverRewritesAndPrunesOnlyItsOwn(t *testing.T) {
	e := newEnv(t)
	e.configSecret(t)
	for _, n := range []string{"s1", "s2", "s3"} {
		e.put(t, n, typeKey, map[string][]byte{"k": testkeys.PKCS8(t)})
	}
	e.put(t, "kp", typeKP, kpData(e, t, testkeys.PKCS8(t)))
	c := e.start(t)
	waitFor(t, 10*time.Second, "4 files", func() bool { return len(tree(t, e.keys)) == 4 })
	inodes := map[string]uint64{}
	for n := range tree(t, e.keys) {
		inodes[n] = ino(t, filepath.Join(e.keys, n))
	}
	unwraps := e.kp.Server.Requests(mockkp.OpUnwrap)
	c.stop()

	e.del(t, "s2")
	foreign := filepath.Join(e.keys, keyfile.Name(ns, "someone", "else"))
	if err := os.WriteFile(foreign, testkeys.PKCS8(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c = e.start(t) // ready = the full resync is done
	got := tree(t, e.keys)
	if _, ok := got[keyfile.Name(ns, "s2", "k")]; ok {
		t.Errorf("file of the deleted Secret not pruned")
	}
	if _, ok := got[filepath.Base(foreign)]; !ok {
		t.Errorf("foreign file pruned")
	}
	for n, i := range inodes {
		if n == keyfile.Name(ns, "s2", "k") {
			continue
		}
		if ino(t, filepath.Join(e.keys, n)) != i {
			t.Errorf("%s rewritten on restart", n)
		}
	}
	if n := e.kp.Server.Requests(mockkp.OpUnwrap); n != unwraps {
		t.Errorf("unwrap requests %d after restart, want %d (never on resync)", n, unwraps)
	}
	if w := c.metric("keysync_syncer_file_writes_total"); w != 0 {
		t.Errorf("file_writes_total %v after restart, want 0", w)
	}
	if v := c.metric("keysync_syncer_last_sync_timestamp_seconds"); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last_sync_timestamp_seconds %v", v)
	}
	c.stop()
}

// TestKillBetweenStagingAndRename: SIGKILL the syncer after it staged a file and before the
// rename; no partial file is ever visible in the tree, and the next run completes the job
// and removes the leftover.
func TestKillBetweenStagingAndRename(t *testing.T) {
	e := newEnv(t)
	keep := testkeys.PKCS8(t)
	e.put(t, "before", typeKey, map[string][]byte{"k": keep})
	c := e.start(t) // the pause hook is off for the first file
	waitFor(t, 10*time.Second, "first file", func() bool { return len(tree(t, e.keys)) == 1 })
	c.stop()

	marker := filepath.Join(t.TempDir(), "staged")
	c = e.start(t, pauseEnv+"="+marker)
	key := testkeys.RSA(t)
	e.put(t, "new", typeKey, map[string][]byte{"k": key})
	c.waitFor(10*time.Second, "the staged marker", func() bool { _, err := os.Stat(marker); return err == nil })
	data, _ := os.ReadFile(marker)
	staged, final, _ := strings.Cut(string(data), "\n")
	if filepath.Dir(staged) != e.staging || filepath.Dir(final) != e.keys {
		t.Fatalf("staged %s → %s, want staging dir → keys dir", staged, final)
	}
	if got, err := os.ReadFile(staged); err != nil || string(got) != string(key) {
		t.Fatalf("staged file incomplete before the rename: %v", err)
	}
	check := func(when string) {
		for p, content := range tree(t, e.keys) {
			if content != string(keep) {
				t.Errorf("%s: unexpected file %s in the keys tree", when, p)
			}
		}
		assertCleanTree(t, filepath.Join(e.root, "keys"))
	}
	check("paused")
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
	check("killed")

	c = e.start(t)
	waitFor(t, 10*time.Second, "the new file after restart", func() bool {
		got, err := os.ReadFile(final)
		return err == nil && string(got) == string(key)
	})
	if left, _ := filepath.Glob(filepath.Join(e.staging, ".stage-*")); len(left) != 0 {
		t.Errorf("staged leftovers after restart: %v", left)
	}
	assertCleanTree(t, filepath.Join(e.root, "keys"))
	c.stop()
}

// TestKillAtEachStepOfARotation (issue 13, defect 1): SIGKILL the syncer after each step of
// writing a new kp-key version (record, stage, rename); the restarted syncer never keeps the
// old key under the new version's record: it unwraps again, writes the new key and says so
// with a WriteRecovered Event.
func TestKillAtEachStepOfARotation(t *testing.T) {
	e := newEnv(t)
	e.configSecret(t)
	for _, step := range []keyfile.Step{keyfile.StepRecorded, keyfile.StepStaged, keyfile.StepRenamed} {
		t.Run(string(step), func(t *testing.T) {
			name := "rot-" + string(step)
			keyA, keyB := testkeys.PKCS8(t), testkeys.RSA(t)
			file := filepath.Join(e.keys, keyfile.Name(ns, name, "kp-key"))
			read := func() string { b, _ := os.ReadFile(file); return string(b) }
			e.put(t, name, typeKP, kpData(e, t, keyA))
			c := e.start(t)
			waitFor(t, 10*time.Second, "key A", func() bool { return read() == string(keyA) })
			c.stop()

			marker := filepath.Join(t.TempDir(), "paused")
			c = e.start(t, pauseEnv+"="+marker, pauseStepEnv+"="+string(step))
			e.put(t, name, typeKP, kpData(e, t, keyB))
			c.waitFor(10*time.Second, "the pause at "+string(step), func() bool { _, err := os.Stat(marker); return err == nil })
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
			assertCleanTree(t, filepath.Join(e.root, "keys"))

			c = e.start(t)
			waitFor(t, 10*time.Second, "key B after the restart", func() bool { return read() == string(keyB) })
			e.waitEvent(t, name, "WriteRecovered")
			if left, _ := filepath.Glob(filepath.Join(e.staging, ".stage-*")); len(left) != 0 {
				t.Errorf("staged leftovers after restart: %v", left)
			}
			c.stop()
		})
	}
}

// TestUnwrapFailuresThatAreNotRetried: 4xx answers are not retried and the file goes.
func TestUnwrapFailuresThatAreNotRetried(t *testing.T) {
	e := newEnv(t)
	e.configSecret(t)
	c := e.start(t)
	e.put(t, "unknown", typeKP, map[string][]byte{kpkey.RootKeyIDKey: []byte("00000000-0000-4000-8000-000000000000"),
		kpkey.CiphertextKey: []byte(e.kp.Ciphertext(t, testkeys.PKCS8(t)))})
	e.put(t, "garbage", typeKP, map[string][]byte{kpkey.RootKeyIDKey: []byte(e.kp.RootKeyID),
		kpkey.CiphertextKey: []byte(base64.StdEncoding.EncodeToString([]byte("not a ciphertext")))})
	e.waitEvent(t, "unknown", "UnwrapFailed")
	e.waitEvent(t, "garbage", "UnwrapFailed")
	n := e.kp.Server.Requests(mockkp.OpUnwrap)
	time.Sleep(500 * time.Millisecond) // ten base delays
	if m := e.kp.Server.Requests(mockkp.OpUnwrap); m != n || n != 2 {
		t.Errorf("unwrap requests %d then %d, want 2 and no retry", n, m)
	}
	if got := tree(t, e.keys); len(got) != 0 {
		t.Errorf("files written: %v", len(got))
	}
	if v := c.metric(`keysync_syncer_unwrap_calls_total`); v != 2 {
		t.Errorf("unwrap_calls_total %v, want 2", v)
	}
	c.stop()
}

// TestBadFlagsAndLayouts: the program refuses what would break the rename or CRI-O.
func TestBadFlagsAndLayouts(t *testing.T) {
	root := t.TempDir()
	// A kubeconfig that parses; nothing listens at its server, and no case gets that far.
	kc := filepath.Join(root, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    string
		noDirIn string // this directory must not exist afterwards
	}{
		{name: "staging inside keys", args: []string{"--keys-dir=" + root + "/k", "--staging-dir=" + root + "/k/s", "--kubeconfig=" + kc}, want: "must not contain"},
		{name: "bad owner", args: []string{"--keys-dir=" + root + "/k", "--owner=root", "--kubeconfig=" + kc}, want: "invalid owner"},
		{name: "no kubeconfig", args: []string{"--keys-dir=" + root + "/k2", "--staging-dir=" + root + "/s2", "--kubeconfig=" + root + "/missing"},
			want: "kubeconfig", noDirIn: root + "/k2"},
		{name: "no kubeconfig leaves no staging dir", args: []string{"--keys-dir=" + root + "/k3", "--staging-dir=" + root + "/s3", "--kubeconfig=" + root + "/missing"},
			want: "kubeconfig", noDirIn: root + "/s3"},
		{name: "unknown flag", args: []string{"--nope"}, want: "flag provided but not defined"},
		{name: "bad prepare-for", args: []string{"--keys-dir=" + root + "/k4", "--prepare-for=nobody"}, want: "invalid --prepare-for", noDirIn: root + "/k4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			code := appMain(t, tc.args, &out)
			if code == 0 || !strings.Contains(out.String(), tc.want) {
				t.Errorf("exit %d, output %q; want failure mentioning %q", code, out.String(), tc.want)
			}
			if tc.noDirIn != "" {
				if _, err := os.Stat(tc.noDirIn); err == nil {
					t.Errorf("%s was created although the program stopped", tc.noDirIn)
				}
			}
		})
	}
}
