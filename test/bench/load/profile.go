package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// With -pprof DIR every process serves net/http/pprof (a tinymod replica
// through run's --pprof-bind-address, a baseline process through its own
// --pprof), and the program takes a CPU profile of each while the load is
// steady, into DIR/<process>.pprof:
//
//	go run ./test/bench/load -rate 10000 -duration 30s -pprof /tmp/prof
//	go tool pprof -top /tmp/prof/load-sink-0.pprof

// servePprof serves net/http/pprof's handlers on addr for the life of the
// process; "" serves nothing.
func servePprof(addr string) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	go func() { _ = http.Serve(ln, mux) }()
	return nil
}

// profileAll takes a CPU profile of every process that serves pprof, from
// at for seconds, each into dir/<id>.pprof.
func profileAll(dir string, procs []*proc, at time.Time, seconds int) []error {
	time.Sleep(time.Until(at))
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for i, p := range procs {
		if p.pprof == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fetchProfile(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.pprof, seconds), filepath.Join(dir, p.id+".pprof"))
		}()
	}
	wg.Wait()
	return errs
}

func fetchProfile(url, path string) error {
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
