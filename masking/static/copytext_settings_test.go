package static_test

import "testing"

// TestCopyTextIgnoresSourceSettings copies a table in COPY's text format,
// which an integer entity column of its masked column requires, from a
// source database whose DateStyle, IntervalStyle and extra_float_digits
// differ from the target's defaults. Kept dates, intervals and floats must
// arrive unchanged, whatever output style the source database sets.
func TestCopyTextIgnoresSourceSettings(t *testing.T) {
	src, dst := copyMasked(t, "style", `
		ALTER DATABASE style_src SET DateStyle = 'SQL, DMY';
		ALTER DATABASE style_src SET IntervalStyle = 'sql_standard';
		ALTER DATABASE style_src SET extra_float_digits = -15;
		CREATE TABLE visits (id int PRIMARY KEY, email text, day date, span interval, ratio float8);
		INSERT INTO visits VALUES (1, 'a@example.org', '2024-03-05', '-1 day -2 hours', 1.0 / 3);`,
		"columns:\n  public.visits.email: {transformer: hash, entity: id}\n")
	// The query spells each value out in a form that no setting changes.
	sameResult(t, src, dst, "SELECT id, to_char(day, 'YYYY-MM-DD'), extract(epoch FROM span), float8send(ratio) FROM visits ORDER BY id")
}
