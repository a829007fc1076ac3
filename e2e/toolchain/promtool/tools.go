//go:build tools

// Package tools pins the promtool command built by ../build (rule unit tests: `promtool test rules`).
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
