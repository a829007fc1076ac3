//go:build tools

// Package tools pins the Python language host built by ../build. Since sdk v3.80.0 the host is the
// untagged nested module .../sdk/python/cmd/pulumi-language-python/v3, which the Go proxy does not
// serve; up to v3.79.0 it is a package of the sdk/v3 module itself, so that version is used.
package tools

import _ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
