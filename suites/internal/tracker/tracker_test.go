package tracker

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCleanupLIFO(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		fail     map[string]bool
		wantErrs []string
	}{
		{name: "all succeed"},
		{name: "failures do not stop the rest", fail: map[string]bool{"b": true, "c": true},
			wantErrs: []string{"failed to clean up c: boom", "failed to clean up b: boom"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var tr Tracker
			var order []string
			for _, name := range []string{"a", "b", "c"} {
				tr.Add(name, func(context.Context) error {
					order = append(order, name)
					if tc.fail[name] {
						return errors.New("boom")
					}
					return nil
				})
			}
			if tr.Len() != 3 {
				t.Fatalf("Len = %d", tr.Len())
			}
			err := tr.Cleanup(context.Background())
			if want := []string{"c", "b", "a"}; !reflect.DeepEqual(order, want) {
				t.Fatalf("order = %v, want %v", order, want)
			}
			if len(tc.wantErrs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					t.Fatal("want an error")
				}
				if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tc.wantErrs) {
					t.Fatalf("errors = %q, want %q", got, tc.wantErrs)
				}
			}
			if tr.Len() != 0 || tr.Cleanup(context.Background()) != nil || len(order) != 3 {
				t.Fatal("second Cleanup must do nothing")
			}
		})
	}
}
