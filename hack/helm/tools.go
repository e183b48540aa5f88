//go:build tools

// Package tools pins helm, built from the Go module proxy by build.sh. It is a
// module of its own so that helm's Kubernetes libraries never meet tinymod's.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
