// Package version reports the build version of ward, set at link time by the
// Makefile with -ldflags "-X ward.dev/ward/internal/version.Version=...".
package version

// Version is the release or commit the binary was built from.
var Version = "dev"
