package main

import "syscall"

// syscallAttr runs a child as another user in tests.
type syscallAttr = syscall.SysProcAttr
