package store

import (
	"context"
	"fmt"
	"time"
)

// Quarantine is a SPIFFE ID cut off from every credential and connection.
type Quarantine struct {
	SPIFFEID  string    `json:"spiffe_id"`
	Reason    string    `json:"reason"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
}

// PutQuarantine records (or replaces) a quarantine.
func (s *Store) PutQuarantine(ctx context.Context, q Quarantine) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO quarantine (spiffe_id, reason, created_by, created_at)
		VALUES (?, ?, ?, ?) ON CONFLICT (spiffe_id) DO UPDATE SET reason = excluded.reason,
		created_by = excluded.created_by, created_at = excluded.created_at`,
		q.SPIFFEID, q.Reason, q.CreatedBy, unixMilli(q.CreatedAt))
	if err != nil {
		return fmt.Errorf("store: put quarantine: %w", err)
	}
	return nil
}

// DeleteQuarantine removes a quarantine; it returns ErrNotFound when none was set.
func (s *Store) DeleteQuarantine(ctx context.Context, spiffeID string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM quarantine WHERE spiffe_id = ?`, spiffeID)
	if err != nil {
		return fmt.Errorf("store: delete quarantine: %w", err)
	}
	return requireOneRow(res)
}

// Quarantines returns every quarantine in force.
func (s *Store) Quarantines(ctx context.Context) ([]Quarantine, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT spiffe_id, reason, created_by, created_at FROM quarantine ORDER BY spiffe_id`)
	if err != nil {
		return nil, fmt.Errorf("store: list quarantines: %w", err)
	}
	defer rows.Close()

	var out []Quarantine
	for rows.Next() {
		var (
			q  Quarantine
			at int64
		)
		if err := rows.Scan(&q.SPIFFEID, &q.Reason, &q.CreatedBy, &at); err != nil {
			return nil, fmt.Errorf("store: list quarantines: %w", err)
		}
		q.CreatedAt = fromMilli(at)
		out = append(out, q)
	}
	return out, rows.Err()
}
