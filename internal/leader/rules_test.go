package leader

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := []Config{{15 * time.Second, 10 * time.Second, 2 * time.Second}, {2 * time.Second, 1500 * time.Millisecond, 500 * time.Millisecond}}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := map[string]Config{
		"must be longer than the renew deadline": {10 * time.Second, 10 * time.Second, 2 * time.Second},
		"1.2 × the retry period":                 {15 * time.Second, 2400 * time.Millisecond, 2 * time.Second},
		"positive":                               {0, 10 * time.Second, 2 * time.Second},
	}
	for want, c := range bad {
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: got %v, want %q", c, err, want)
		}
	}
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

// TestNoOverlap walks every combination of renewal send time, observation
// delay and check time on a fake clock, and checks that a leader's validity
// always ends before any other replica may acquire.
func TestNoOverlap(t *testing.T) {
	ms := time.Millisecond
	configs := []Config{{15000 * ms, 10000 * ms, 2000 * ms}, {2000 * ms, 1500 * ms, 500 * ms}, {1000 * ms, 800 * ms, 200 * ms}}
	for _, c := range configs {
		for sent := time.Duration(0); sent <= 3*c.LeaseDuration; sent += c.RetryPeriod / 4 {
			validUntil := ValidUntil(c, sent)
			// The write lands and is seen by another replica some time after it is sent.
			for delay := time.Duration(0); delay <= c.LeaseDuration; delay += c.RetryPeriod / 4 {
				o := Observe(Observation{}, Observation{Exists: true, Holder: "a", LeaseDuration: c.LeaseDuration, Version: "1"}, sent+delay)
				for now := sent; now <= sent+3*c.LeaseDuration; now += 50 * ms {
					if IsValid(validUntil, now) && CanAcquire(o, "b", now) {
						t.Fatalf("%+v: renewal sent at %s, seen at %s: at %s a is valid and b may acquire", c, sent, sent+delay, now)
					}
				}
			}
		}
	}
}

func TestCanAcquire(t *testing.T) {
	held := Observe(Observation{}, Observation{Exists: true, Holder: "a", LeaseDuration: 10 * time.Second, Version: "5"}, 100*time.Second)
	cases := []struct {
		o    Observation
		id   string
		now  time.Duration
		want bool
	}{
		{Observation{}, "b", 0, true},
		{held, "b", 100 * time.Second, false},
		{held, "b", 109 * time.Second, false},
		{held, "b", 110 * time.Second, true},
		{held, "a", 100 * time.Second, true},
		{Observation{Exists: true, Holder: "", Version: "6"}, "b", 0, true},
	}
	for _, c := range cases {
		if got := CanAcquire(c.o, c.id, c.now); got != c.want {
			t.Errorf("CanAcquire(%+v, %s, %s) = %v", c.o, c.id, c.now, got)
		}
	}
}

func TestObserveKeepsFirstSeenTime(t *testing.T) {
	o := Observe(Observation{}, Observation{Exists: true, Holder: "a", Version: "1"}, 5*time.Second)
	o = Observe(o, Observation{Exists: true, Holder: "a", Version: "1"}, 9*time.Second)
	if o.SeenAt != 5*time.Second {
		t.Errorf("same version re-seen moved SeenAt to %s", o.SeenAt)
	}
	o = Observe(o, Observation{Exists: true, Holder: "a", Version: "2"}, 9*time.Second)
	if o.SeenAt != 9*time.Second {
		t.Errorf("a new version kept SeenAt %s", o.SeenAt)
	}
}

func TestValidity(t *testing.T) {
	c := Config{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	until := ValidUntil(c, 100*time.Second)
	if !IsValid(until, 109999*time.Millisecond) || IsValid(until, 110*time.Second) {
		t.Errorf("validity around %s wrong", until)
	}
	if NextRenewal(c, 100*time.Second) != 102*time.Second {
		t.Error("next renewal")
	}
}

func TestBootClockMoves(t *testing.T) {
	a := BootClock{}.Now()
	time.Sleep(time.Millisecond)
	if b := (BootClock{}).Now(); b <= a {
		t.Errorf("boot clock did not move: %s then %s", a, b)
	}
}

func TestNewer(t *testing.T) {
	for _, c := range []struct {
		prev, next string
		want       bool
	}{
		{"", "1", true}, {"1", "2", true}, {"2", "1", false}, {"5", "5", false},
		{"9", "10", true}, {"10", "9", false}, // numerically, not as strings
		{"a", "b", true}, {"a", "a", false}, // opaque versions: any change is new
	} {
		if got := Newer(c.prev, c.next); got != c.want {
			t.Errorf("Newer(%q, %q) = %v, want %v", c.prev, c.next, got, c.want)
		}
	}
}

// TestDecide walks the elector's policy through every kind of state at times
// around each boundary, and checks what no decision may ever be.
func TestDecide(t *testing.T) {
	c := Config{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	const me = "a"
	leases := []Observation{
		{}, // none
		{Exists: true, Holder: "", LeaseDuration: time.Second, Version: "1", SeenAt: 3 * time.Second},
		{Exists: true, Holder: me, LeaseDuration: 15 * time.Second, Version: "2", SeenAt: 3 * time.Second},
		{Exists: true, Holder: "b", LeaseDuration: 15 * time.Second, Version: "3", SeenAt: 3 * time.Second},
	}
	times := []time.Duration{0, 3 * time.Second, 4999 * time.Millisecond, 5 * time.Second, 12999 * time.Millisecond,
		13 * time.Second, 17999 * time.Millisecond, 18 * time.Second, time.Minute}
	for _, lease := range leases {
		for _, observed := range []bool{false, true} {
			for _, leading := range []bool{false, true} {
				for _, now := range times {
					s := State{Identity: me, Observed: observed, Lease: lease, Leading: leading,
						LastSent: 3 * time.Second, ValidUntil: 13 * time.Second}
					d := Decide(c, s, now)
					name := fmt.Sprintf("lease %q observed=%v leading=%v now=%s: %s (%s)", lease.Holder, observed, leading, now, d.Step, d.Reason)
					switch {
					case d.Step == Renew && !IsValid(s.ValidUntil, now):
						t.Errorf("%s: renews past validity", name)
					case d.Step == Renew && !leading, d.Step == EndTerm && !leading:
						t.Errorf("%s: renews or ends a term it does not hold", name)
					case d.Step == Acquire && (leading || !observed):
						t.Errorf("%s: acquires while leading or before seeing the lease", name)
					case d.Step == Acquire && lease.Exists && lease.Holder != "" && lease.Holder != me && now < ExpiresAt(lease):
						t.Errorf("%s: takes another's lease before it expires", name)
					case leading && !IsValid(s.ValidUntil, now) && d.Step != EndTerm:
						t.Errorf("%s: keeps a term past its validity", name)
					case leading && observed && lease.Holder != me && d.Step != EndTerm:
						t.Errorf("%s: keeps a term while another holds the lease", name)
					case d.Step == Wait && d.Wait <= 0:
						t.Errorf("%s: waits %s", name, d.Wait)
					case leading && d.Step == Wait && now+d.Wait > s.ValidUntil:
						t.Errorf("%s: sleeps past its validity (%s)", name, now+d.Wait)
					}
				}
			}
		}
	}
	// The expected steps at a few points.
	held := State{Identity: me, Observed: true, Lease: leases[2], Leading: true, LastSent: 3 * time.Second, ValidUntil: 13 * time.Second}
	for _, want := range []struct {
		now  time.Duration
		step Step
	}{{4 * time.Second, Wait}, {5 * time.Second, Renew}, {13 * time.Second, EndTerm}} {
		if d := Decide(c, held, want.now); d.Step != want.step {
			t.Errorf("leader at %s: %s, want %s", want.now, d.Step, want.step)
		}
	}
	other := State{Identity: me, Observed: true, Lease: leases[3]}
	if d := Decide(c, other, 17*time.Second); d.Step != Wait || d.Wait != time.Second {
		t.Errorf("candidate before expiry: %+v, want wait 1s", d)
	}
	if d := Decide(c, other, 18*time.Second); d.Step != Acquire {
		t.Errorf("candidate at expiry: %+v, want acquire", d)
	}
}
