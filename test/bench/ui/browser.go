package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/heapprofiler"
	"github.com/chromedp/cdproto/memory"
	"github.com/chromedp/cdproto/page"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// browser starts headless Chromium (Debian's, as `make browser` installs
// it) with the flags of the page's end-to-end test.
func browser(ctx context.Context, dir string) (context.Context, func(), error) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		return nil, nil, fmt.Errorf("chromium is not installed (make browser installs it): %w", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir+"/chromium"), chromedp.WindowSize(1400, 900))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		cancelB()
		cancelA()
		return nil, nil, fmt.Errorf("start chromium: %w", err)
	}
	return bctx, func() { cancelB(); cancelA() }, nil
}

// chromedpTab opens a fresh tab of the browser; its cancel closes it. The
// tab is made here, with no timeout, since it lives as long as the context
// of the first call on it.
func chromedpTab(browser context.Context) (context.Context, func(), error) {
	tab, cancel := chromedp.NewContext(browser)
	if err := chromedp.Do(tab); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("open a tab: %w", err)
	}
	return tab, cancel, nil
}

func navigate(tab context.Context, url string) error {
	c, cancel := context.WithTimeout(tab, time.Minute)
	defer cancel()
	return chromedp.Do(c, chromedp.Navigate(url))
}

// addScript runs src in the tab's every new document, before the page's own
// scripts.
func addScript(tab context.Context, src string) error {
	_, err := chromedp.Call(tab, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src})
	return err
}

func evalJS[T any](tab context.Context, expr string) (T, error) {
	c, cancel := context.WithTimeout(tab, 30*time.Second)
	defer cancel()
	return chromedp.Run(c, chromedp.Evaluate[T](expr))
}

func evalVoid(tab context.Context, expr string) error {
	_, err := evalJS[any](tab, expr+"; null")
	return err
}

// waitJS waits until expr is true in the page. It only waits: every time
// the benchmark reports is taken in the page.
func waitJS(ctx context.Context, tab context.Context, limit time.Duration, expr string) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ok, err := evalJS[bool](tab, "!!("+expr+")")
		if err == nil && ok {
			return nil
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		return fmt.Errorf("%s not within %s: %w", expr, limit, last)
	}
	return fmt.Errorf("%s not within %s", expr, limit)
}

func collectGarbage(tab context.Context) error {
	_, err := chromedp.Call(tab, heapprofiler.CollectGarbage, cdp.Empty{})
	return err
}

// heapUsage is the page's JavaScript heap in use, in bytes, with the DOM's
// node and listener counts.
func heapUsage(tab context.Context) (used float64, nodes, listeners int64, err error) {
	h, err := chromedp.Call(tab, cdpruntime.GetHeapUsage, cdp.Empty{})
	if err != nil {
		return 0, 0, 0, err
	}
	d, err := chromedp.Call(tab, memory.GetDOMCounters, cdp.Empty{})
	if err != nil {
		return 0, 0, 0, err
	}
	return h.UsedSize, d.Nodes, d.JsEventListeners, nil
}

// watchLease watches l with a plain client-go Watch from its version on and
// calls seen with each holder and when its event arrived. The returned func
// stops the watch.
func (b *bench) watchLease(ctx context.Context, l *coordinationv1.Lease, seen func(holder string, at time.Time)) (func(), error) {
	cs, err := kubernetes.NewForConfig(b.cfg)
	if err != nil {
		return nil, err
	}
	w, err := cs.CoordinationV1().Leases(l.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + l.Name, ResourceVersion: l.ResourceVersion})
	if err != nil {
		return nil, err
	}
	go func() {
		for ev := range w.ResultChan() {
			at := time.Now()
			if ev.Type != watch.Modified && ev.Type != watch.Added {
				continue
			}
			if got, ok := ev.Object.(*coordinationv1.Lease); ok && got.Spec.HolderIdentity != nil {
				seen(*got.Spec.HolderIdentity, at)
			}
		}
	}()
	return w.Stop, nil
}
