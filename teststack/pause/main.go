// The pause container of the test stack's real node: the process that holds a pod's
// namespaces. It blocks until SIGINT or SIGTERM and, as PID 1 of a pod that shares its pid
// namespace, reaps the zombies it inherits. Built static (CGO off) by teststack/images.py.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
