package app_test

import (
	"testing"
	"time"

	"github.com/keysync-dev/keysync/syncer/app"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want app.Config
	}{
		{"defaults", nil, nil, app.Config{KeysDir: "/etc/crio/keys/synced", Namespace: "image-key-synchronizer",
			MetricsAddr: ":9090", ProbeAddr: ":8081", LogLevel: "info", ResyncPeriod: 10 * time.Minute,
			UnwrapTimeout: 30 * time.Second, RetryBase: time.Second, RetryMax: 5 * time.Minute}},
		{"env", nil, map[string]string{"POD_NAMESPACE": "other", "NODE_NAME": "n1"}, app.Config{KeysDir: "/etc/crio/keys/synced",
			Namespace: "other", NodeName: "n1", MetricsAddr: ":9090", ProbeAddr: ":8081", LogLevel: "info",
			ResyncPeriod: 10 * time.Minute, UnwrapTimeout: 30 * time.Second, RetryBase: time.Second, RetryMax: 5 * time.Minute}},
		{"flags win", []string{"--namespace=x", "--node-name=y", "--keys-dir=/k", "--staging-dir=/s", "--owner=1:2",
			"--kubeconfig=/kc", "--metrics-addr=", "--probe-addr=:1"}, map[string]string{"POD_NAMESPACE": "other"},
			app.Config{KeysDir: "/k", StagingDir: "/s", Namespace: "x", NodeName: "y", Kubeconfig: "/kc", ProbeAddr: ":1",
				Owner: "1:2", LogLevel: "info", ResyncPeriod: 10 * time.Minute, UnwrapTimeout: 30 * time.Second,
				RetryBase: time.Second, RetryMax: 5 * time.Minute}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := app.ParseFlags(tc.args, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if got.KeysDir != tc.want.KeysDir || got.StagingDir != tc.want.StagingDir || got.Namespace != tc.want.Namespace ||
				got.NodeName != tc.want.NodeName || got.Kubeconfig != tc.want.Kubeconfig || got.MetricsAddr != tc.want.MetricsAddr ||
				got.ProbeAddr != tc.want.ProbeAddr || got.Owner != tc.want.Owner || got.LogLevel != tc.want.LogLevel ||
				got.ResyncPeriod != tc.want.ResyncPeriod || got.UnwrapTimeout != tc.want.UnwrapTimeout ||
				got.RetryBase != tc.want.RetryBase || got.RetryMax != tc.want.RetryMax {
				t.Errorf("ParseFlags = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := app.ParseFlags([]string{"extra"}, func(string) string { return "" }); err == nil {
		t.Errorf("positional argument accepted")
	}
	// Issue 13: production defaults are secure and bounded.
	d, err := app.ParseFlags(nil, func(string) string { return "" })
	if err != nil || d.AllowInsecureKP || d.MaxFilesPerSecret != 256 || d.MaxFiles != 4096 || d.PrepareFor != "" {
		t.Errorf("defaults %+v, %v: want --allow-insecure-kp off and limits 256/4096", d, err)
	}
	l, err := app.ParseFlags([]string{"--allow-insecure-kp", "--max-files-per-secret=3", "--max-files=9", "--prepare-for=1:2"}, func(string) string { return "" })
	if err != nil || !l.AllowInsecureKP || l.MaxFilesPerSecret != 3 || l.MaxFiles != 9 || l.PrepareFor != "1:2" {
		t.Errorf("ParseFlags = %+v, %v", l, err)
	}
	for _, bad := range []string{"--max-files=0", "--max-files-per-secret=-1"} {
		if _, err := app.ParseFlags([]string{bad}, func(string) string { return "" }); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
