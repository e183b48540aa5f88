//go:build !linux

package cli

import "syscall"

// replicaProcAttr is nothing off Linux, which alone can tie a child's life to
// its parent's: there, a dev process killed with SIGKILL leaves its replicas
// running (Ctrl-C and SIGTERM still stop them).
func replicaProcAttr() *syscall.SysProcAttr { return nil }
