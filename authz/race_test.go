//go:build race

package authz_test

// raceEnabled is true when the tests run under the race detector, which
// slows plain Casbin about tenfold; the differential test sends fewer
// requests then.
const raceEnabled = true
