package cli

import "syscall"

// replicaProcAttr makes a replica of dev never outlive the dev process,
// however that ends.
func replicaProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
