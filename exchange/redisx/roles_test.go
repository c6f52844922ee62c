package redisx_test

import "github.com/shmex/shmex/internal/childproc"

// roles are the test children of the package (simulated nodes).
var roles = map[string]childproc.Role{}
