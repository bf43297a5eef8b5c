package conformance

import (
	"slices"
	"testing"
)

func TestMissingReaches(t *testing.T) {
	addrs := []string{"10.244.0.5:8080", "10.96.12.1:8080"}
	tests := []struct {
		name string
		logs string
		want []string
	}{
		{"both reached", "keysync-fixture variant=jwe-rsa-plain\nreached 10.244.0.5:8080: keysync-fixture variant=jwe-rsa-plain\nreached 10.96.12.1:8080: keysync-fixture variant=jwe-rsa-plain\n", nil},
		{"service not reached", "keysync-fixture variant=x\nreached 10.244.0.5:8080: keysync-fixture variant=x\nkeysync-fixture: failed to reach 10.96.12.1:8080: i/o timeout\n", []string{"10.96.12.1:8080"}},
		{"nothing printed", "", addrs},
		{"reached something that is not a marker", "reached 10.244.0.5:8080: hello\nreached 10.96.12.1:8080: keysync-fixture variant=x\n", []string{"10.244.0.5:8080"}},
		{"another address reached", "reached 10.244.0.55:8080: keysync-fixture variant=x\nreached 10.96.12.1:8080: keysync-fixture variant=x\n", []string{"10.244.0.5:8080"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := missingReaches(tt.logs, addrs); !slices.Equal(got, tt.want) {
				t.Errorf("missingReaches = %q, want %q", got, tt.want)
			}
		})
	}
}
