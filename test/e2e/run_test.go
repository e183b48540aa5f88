package e2e

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/tinymod/tinymod/internal/controlplane/controlplanetest"
)

func TestMain(m *testing.M) { controlplanetest.Main(m) }

const lease = 2 * time.Second

// TestRunProcessesFailover starts three `tinymod run` processes, kills the
// leader with SIGKILL and expects a new one within lease + 1s, then stops the
// next leader with SIGTERM and expects a handover within a second and a clean exit.
func TestRunProcessesFailover(t *testing.T) {
	env := controlplanetest.Start(t)
	ns := env.Namespace(t)
	c := newCluster(t, env.Kubeconfig)
	procs := map[string]*process{}
	for i := range 3 {
		id := fmt.Sprintf("proc-%d", i)
		procs[id] = c.Run("e2e", ns, id)
	}
	waitOther := func(not string) string { return waitLeader(t, env.Client, ns, "e2e", not) }

	first := waitOther("")
	killed := time.Now()
	if err := procs[first].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	second := waitOther(first)
	if took := time.Since(killed); took > lease+time.Second {
		t.Errorf("after kill -9 of %s, %s led after %s; want within %s", first, second, took, lease+time.Second)
	}

	stopped := time.Now()
	if err := procs[second].Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	third := waitOther(second)
	if took := time.Since(stopped); took > time.Second {
		t.Errorf("graceful handover from %s to %s took %s; want under 1s", second, third, took)
	}
	select {
	case <-procs[second].Exited:
		if err := procs[second].Err; err != nil {
			t.Errorf("%s exited with %v after SIGTERM", second, err)
		}
	case <-time.After(20 * time.Second):
		t.Errorf("%s still running 20s after SIGTERM", second)
	}
	if third == first {
		t.Errorf("the killed process %s leads again", first)
	}
}
