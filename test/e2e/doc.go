// Package e2e runs real `tinymod run` processes against a real control plane.
package e2e
