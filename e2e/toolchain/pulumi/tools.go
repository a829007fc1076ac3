//go:build tools

// Package tools pins the Pulumi CLI built by ../build.
// (pulumi-language-python is a separate, untagged nested module the Go proxy does not serve.)
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
