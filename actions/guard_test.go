package actions

import "testing"

func TestGuardSender(t *testing.T) {
	g := NewGuard([]string{"abuse@example.net", "@partner.example", "<Postmaster@Example.ORG>"})
	cases := []struct {
		keyType, key string
		refused      bool
	}{
		{"sender", "bomber@spam.example", false},
		{"sender_domain", "spam.example", false},
		// Case variants of ignored senders: the maps fold case.
		{"sender", "Abuse@Example.NET", true},
		{"sender", "ABUSE@example.net", true},
		{"sender", "postmaster@example.org", true},
		// A domain that holds an ignored sender or domain, or is in one.
		{"sender_domain", "example.net", true},
		{"sender_domain", "EXAMPLE.net", true},
		{"sender_domain", "net", true},
		{"sender_domain", "partner.example", true},
		{"sender_domain", "mx.partner.example", true},
		{"sender", "x@mx.partner.example", true},
		{"sender", "x@other.example.net", false},
		// Wildcards of access maps and badmailfrom.
		{"sender", "user@", true},
		{"sender", "@domain.example", true},
		{"sender", "x@.domain.example", true},
		{"sender", "x@domain.example.", true},
		{"sender", "x@a..example", true},
		{"sender", "a@b@c.example", true},
		{"sender_domain", ".domain.example", true},
		{"sender_domain", "@domain.example", true},
		{"sender_domain", "", true},
		{"sender", "x%y@relay.example", true},
		{"sender", "x y@spam.example", true},
	}
	for _, c := range cases {
		err := g.Sender(c.keyType, c.key)
		if (err != nil) != c.refused {
			t.Errorf("Sender(%s, %q) = %v, want refused %v", c.keyType, c.key, err, c.refused)
		}
	}
}

func TestGuardNetwork(t *testing.T) {
	g := NewGuard([]string{"198.51.100.7", "2001:db8::/48"})
	cases := []struct {
		key     string
		refused bool
	}{
		{"192.0.2.1", false},
		{"192.0.2.0/24", false},
		{"127.0.0.1", true},
		{"127.0.0.0/8", true},
		{"0.0.0.0", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"198.51.100.7", true},
		{"198.51.100.0/24", true},
		{"2001:db8:0:1::1", true},
		{"2001:db8::/32", true},
		{"fe80::1%eth0", true},
		{"not-an-address", true},
	}
	for _, c := range cases {
		_, err := g.Network(c.key)
		if (err != nil) != c.refused {
			t.Errorf("Network(%q) = %v, want refused %v", c.key, err, c.refused)
		}
	}
}
