package nodelab

import (
	"slices"
	"strings"
	"testing"
)

func TestMountsUnder(t *testing.T) {
	const mountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
100 22 0:50 / /w/lab/crio/storage/overlay rw shared:2 - overlay overlay rw
101 100 0:51 / /w/lab/crio/storage/overlay/abc/merged rw - overlay overlay rw
102 22 0:4 net:[4026532] /w/lab/crio/run/ns/netns/x rw - nsfs nsfs rw
103 22 0:52 / /w/lab-other/mnt rw - tmpfs tmpfs rw
104 22 0:53 / /w/lab/with\040space rw - tmpfs tmpfs rw
105 22 0:54 / /w/lab rw - tmpfs tmpfs rw
`
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{name: "work dir, deepest first, sibling prefix excluded", dir: "/w/lab/", want: []string{
			"/w/lab/crio/storage/overlay/abc/merged", "/w/lab/crio/run/ns/netns/x", "/w/lab/crio/storage/overlay",
			"/w/lab/with space", "/w/lab"}},
		{name: "nothing mounted", dir: "/elsewhere", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mountsUnder(strings.NewReader(mountinfo), tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}
