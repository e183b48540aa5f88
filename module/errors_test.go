package module

import (
	"errors"
	"fmt"
	"testing"
)

func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	if IsPermanent(base) {
		t.Error("a plain error is permanent")
	}
	p := Permanent(base)
	if !IsPermanent(p) || !errors.Is(p, base) || p.Error() != "bad input" {
		t.Errorf("Permanent(%v) = %v", base, p)
	}
	if wrapped := fmt.Errorf("deliver: %w", p); !IsPermanent(wrapped) {
		t.Error("wrapping lost the class")
	}
	if Permanent(p) != p {
		t.Error("Permanent twice wraps twice")
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}
