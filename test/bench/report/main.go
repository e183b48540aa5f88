// Command report runs every tinymod benchmark, each beside its anchor in the
// same run, and prints one table of the figures with their ratios, goals
// and the command that reproduces each.
//
//	go run ./test/bench/report            # what `make bench` runs
//	go run ./test/bench/report -quick     # fewer trials, shorter runs
//
// The pieces: the scheduler and transport micro-benchmarks (go test -bench),
// the failover and signal-latency program, the short chaos profile, the load
// program (a steady run, then each system's knee) and the scale program. Each program's own output is shown as it
// runs; the table comes last.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tinymod/tinymod/test/bench/benchutil"
)

func main() {
	quick := flag.Bool("quick", false, "fewer trials and shorter runs, for a look rather than a record")
	flag.Parse()
	dir, err := os.MkdirTemp("", "tinymod-report-")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	rowsFile := filepath.Join(dir, "rows.jsonl")

	benchtime, trials, defaultTrials, loadFor, kneeStep, steady := "2s", "20", "5", "60s", "10s", "5m"
	if *quick {
		benchtime, trials, defaultTrials, loadFor, kneeStep, steady = "300ms", "5", "0", "15s", "5s", "30s"
	}
	var rows []benchutil.Row
	var failed []string
	out, err := step("go", "test", "-run", "XXX", "-bench", ".", "-benchtime", benchtime, "-benchmem", "./internal/scheduler/", "./internal/transport/")
	if err != nil {
		failed = append(failed, "micro-benchmarks")
	}
	rows = append(rows, microRows(parseBench(out), benchtime)...)
	steps := []struct {
		name string
		args []string
		env  []string
	}{
		{"failover", []string{"go", "run", "./test/bench/failover", "-trials", trials, "-default-trials", defaultTrials, "-rows", rowsFile}, nil},
		{"chaos", []string{"go", "test", "-count=1", "-run", "TestChaos", "-v", "./test/e2e/chaos/"}, []string{"TINYMOD_BENCH_ROWS=" + rowsFile}},
		{"load", []string{"go", "run", "./test/bench/load", "-duration", loadFor, "-rows", rowsFile}, nil},
		{"load knee", []string{"go", "run", "./test/bench/load", "-knee", "-knee-duration", kneeStep, "-rows", rowsFile}, nil},
		{"scale", []string{"go", "run", "./test/bench/scale", "-steady", steady, "-rows", rowsFile}, nil},
	}
	for _, s := range steps {
		cmd := exec.Command(s.args[0], s.args[1:]...)
		cmd.Env = append(os.Environ(), s.env...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		fmt.Printf("\n== %s: %s\n", s.name, strings.Join(s.args, " "))
		if err := cmd.Run(); err != nil {
			failed = append(failed, s.name)
		}
	}
	data, _ := os.ReadFile(rowsFile)
	for _, line := range bytes.Split(data, []byte("\n")) {
		var r benchutil.Row
		if json.Unmarshal(line, &r) == nil && r.Figure != "" {
			rows = append(rows, r)
		}
	}

	fmt.Printf("\n| figure | tinymod | anchor | anchor's figure | ratio | goal | command |\n|---|---:|---|---:|---:|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s | %s | %s | `%s` |\n", r.Figure, r.Value, r.Anchor, r.AnchorValue, r.Ratio, r.Goal, r.Command)
	}
	if len(failed) > 0 {
		fail(fmt.Errorf("failed: %s", strings.Join(failed, ", ")))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "report:", err)
	os.Exit(1)
}

// step runs a command, showing its output, and returns the output.
func step(args ...string) (string, error) {
	fmt.Printf("\n== %s\n", strings.Join(args, " "))
	var buf bytes.Buffer
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = io.MultiWriter(os.Stdout, &buf)
	cmd.Stderr = os.Stderr
	err := cmd.Run()
	return buf.String(), err
}

// bench is one benchmark result line: its metrics by unit.
type bench map[string]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

func parseBench(out string) map[string]bench {
	got := map[string]bench{}
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		m := benchLine.FindStringSubmatch(s.Text())
		if m == nil {
			continue
		}
		b := bench{}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				b[f[i+1]] = v
			}
		}
		got[m[1]] = b
	}
	return got
}

func microRows(b map[string]bench, benchtime string) []benchutil.Row {
	var rows []benchutil.Row
	sched := "go test -run XXX -bench . -benchtime " + benchtime + " ./internal/scheduler/"
	for _, r := range []struct{ figure, name, anchor, goal string }{
		{"scheduler: one hop", "BenchmarkHop/scheduler", "BenchmarkHop/direct-call", "≤ 2 µs"},
		{"scheduler: one hop with a 3-field mapping", "BenchmarkHop/scheduler-mapping-3-fields", "BenchmarkHop/direct-call", "≤ 10 µs"},
		{"scheduler: fan-out to 10 edges", "BenchmarkFanOut/scheduler-10-edges", "BenchmarkFanOut/direct-call-10", ""},
	} {
		t, a := b[r.name], b[r.anchor]
		if t == nil || a == nil {
			continue
		}
		rows = append(rows, benchutil.Row{Figure: r.figure, Value: fmt.Sprintf("%.0f ns, %.0f allocs", t["ns/op"], t["allocs/op"]),
			Anchor: "direct call of Handle", AnchorValue: fmt.Sprintf("%.1f ns", a["ns/op"]), Ratio: fmt.Sprintf("%.0f×", t["ns/op"]/a["ns/op"]), Goal: r.goal, Command: sched})
	}
	tr := "go test -run XXX -bench . -benchtime " + benchtime + " ./internal/transport/"
	for _, c := range []string{"1", "16", "64"} {
		t, a := b["BenchmarkCrossModuleHop/tinymod/c="+c], b["BenchmarkCrossModuleHop/unary-baseline/c="+c]
		if t == nil || a == nil {
			continue
		}
		rows = append(rows, benchutil.Row{Figure: "cross-module message, concurrency " + c + ": throughput (p50 / p99)",
			Value:  fmt.Sprintf("%.0f msg/s (%.0f / %.0f µs)", 1e9/t["ns/op"], t["p50-µs"], t["p99-µs"]),
			Anchor: "plain unary grpc-go call", AnchorValue: fmt.Sprintf("%.0f msg/s (%.0f / %.0f µs)", 1e9/a["ns/op"], a["p50-µs"], a["p99-µs"]),
			Ratio: fmt.Sprintf("%.2f×", a["ns/op"]/t["ns/op"]), Command: tr})
		if c == "64" {
			rows = append(rows, benchutil.Row{Figure: "cross-module message, concurrency 64: CPU per message, both sides",
				Value: fmt.Sprintf("%.1f µs", t["cpu-µs/msg"]), Anchor: "plain unary grpc-go call", AnchorValue: fmt.Sprintf("%.1f µs", a["cpu-µs/msg"]),
				Ratio: fmt.Sprintf("%.2f×", t["cpu-µs/msg"]/a["cpu-µs/msg"]), Command: tr})
		}
	}
	return rows
}
