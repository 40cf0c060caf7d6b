package pgproxy

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestPlanStampCurrent(t *testing.T) {
	filled := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stamp := planStamp{authz: 3, catalog: filled, maskers: filled.Add(time.Second)}
	cases := []struct {
		name  string
		now   planStamp
		clock time.Time
		want  bool
	}{
		{"unchanged", stamp, filled.Add(time.Second), true},
		{"policy changed", planStamp{authz: 4, catalog: stamp.catalog, maskers: stamp.maskers}, filled, false},
		{"catalog emptied", planStamp{authz: 3, catalog: filled.Add(time.Minute), maskers: stamp.maskers}, filled.Add(time.Minute), false},
		{"maskers emptied", planStamp{authz: 3, catalog: stamp.catalog, maskers: filled.Add(time.Minute)}, filled.Add(time.Minute), false},
		{"catalog expired", stamp, filled.Add(catalogTTL), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := stamp.current(c.now, c.clock); got != c.want {
				t.Errorf("current(%+v, %v) = %v, want %v", c.now, c.clock, got, c.want)
			}
		})
	}
}

func TestPlanCacheMatchesFields(t *testing.T) {
	st := &statement{}
	fields := []pgproto3.FieldDescription{{Name: []byte("email"), TableOID: 7, TableAttributeNumber: 3, DataTypeOID: 25}}
	stamp := planStamp{authz: 1, catalog: time.Unix(100, 0), maskers: time.Unix(100, 0)}
	clock := time.Unix(100, 0).Add(catalogTTL / 2)
	p := &resultPlan{masks: true}

	var c planCache
	c.put(st, fields, stamp, p)
	if got := c.get(st, fields, stamp, clock); got != p {
		t.Errorf("get(same statement and fields) = %p, want %p", got, p)
	}
	binary := []pgproto3.FieldDescription{fields[0]}
	binary[0].Format = 1
	if got := c.get(st, binary, stamp, clock); got != nil {
		t.Errorf("get(binary format) = %p, want nil", got)
	}
	renamed := []pgproto3.FieldDescription{fields[0]}
	renamed[0].TableAttributeNumber = 4
	if got := c.get(st, renamed, stamp, clock); got != nil {
		t.Errorf("get(another origin column) = %p, want nil", got)
	}
	if got := c.get(&statement{}, fields, stamp, clock); got != nil {
		t.Errorf("get(another statement) = %p, want nil", got)
	}
	fields[0].Name[0] = 'E'
	if got := c.get(st, []pgproto3.FieldDescription{{Name: []byte("email"), TableOID: 7, TableAttributeNumber: 3, DataTypeOID: 25}}, stamp, clock); got != p {
		t.Errorf("get after the caller reused its buffer = %p, want %p", got, p)
	}
}
