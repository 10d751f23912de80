package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"syscall"
)

// runHookExec is the script action's launcher when bombwatch holds
// ambient capabilities (the packaged unit gives it CAP_NET_ADMIN for nft
// and iptables): it clears them on its own thread, which execve's new
// program inherits, and runs the hook, which so gets none. Not listed in
// the usage: the script action calls it (actions.Script.Launcher).
func runHookExec(args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "--" {
		return usagef("hook-exec -- PROGRAM [ARGS...]")
	}
	runtime.LockOSThread() // capabilities are per thread: execve takes this one's
	const prCapAmbient, prCapAmbientClearAll = 47, 4
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("clear ambient capabilities: %v", e)
	}
	path, err := exec.LookPath(args[1])
	if err != nil {
		return err
	}
	return syscall.Exec(path, args[1:], os.Environ())
}
