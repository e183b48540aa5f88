package cli

import (
	"testing"
)

func TestModuleAddr(t *testing.T) {
	cases := []struct {
		inCluster bool
		advertise string
		want      string
	}{
		{false, "127.0.0.1:4321", "127.0.0.1:4321"},
		{true, "10.0.0.7:8483", "shop.prod.svc:8483"},
		{true, "[fd00::7]:8483", "shop.prod.svc:8483"},
	}
	for _, c := range cases {
		if got := moduleAddr("shop", "prod", c.inCluster, c.advertise); got != c.want {
			t.Errorf("moduleAddr(%v, %s) = %s, want %s", c.inCluster, c.advertise, got, c.want)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:0": true, "localhost:80": true, "[::1]:1": true, ":8483": false, "0.0.0.0:1": false, "10.1.2.3:4": false, "nonsense": false} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v", addr, got)
		}
	}
}
