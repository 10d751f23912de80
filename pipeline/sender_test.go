package pipeline

import "testing"

// TestAppendSender: the sender key options undo SRS, BATV and tags.
func TestAppendSender(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"SRS0+HHH=TT=orig.example=user@fwd.example", "user@orig.example"},
		{"srs0=HHH=TT=Orig.Example=a=b@fwd", "a=b@orig.example"},
		{"SRS0=broken@fwd", "SRS0=broken@fwd"},
		{"msprvs1=17abc=carol@example.com", "carol@example.com"},
		{"prvs=@x", "prvs=@x"},
	} {
		if got := string(senderOptions{tag: true, batv: true, srs: true}.appendSender(nil, tt.in)); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.in, got, tt.want)
		}
	}
}
