package store

import (
	"context"
	"encoding/json"
	"fmt"

	"ward.dev/ward/internal/config"
)

// MeshServices returns the mesh services added through the API.
func (s *Store) MeshServices(ctx context.Context) ([]config.MeshService, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT spec FROM mesh_services ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: list mesh services: %w", err)
	}
	defer rows.Close()

	var out []config.MeshService
	for rows.Next() {
		var (
			spec string
			svc  config.MeshService
		)
		if err := rows.Scan(&spec); err != nil {
			return nil, fmt.Errorf("store: list mesh services: %w", err)
		}
		if err := json.Unmarshal([]byte(spec), &svc); err != nil {
			return nil, fmt.Errorf("store: decode mesh service: %w", err)
		}
		out = append(out, svc)
	}
	return out, rows.Err()
}

// PutMeshService stores or replaces a mesh service.
func (s *Store) PutMeshService(ctx context.Context, svc config.MeshService) error {
	spec, err := json.Marshal(svc)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO mesh_services (name, spec) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET spec = excluded.spec`, svc.Name, string(spec))
	if err != nil {
		return fmt.Errorf("store: put mesh service: %w", err)
	}
	return nil
}

// DeleteMeshService removes a mesh service; ErrNotFound when absent.
func (s *Store) DeleteMeshService(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM mesh_services WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("store: delete mesh service: %w", err)
	}
	return requireOneRow(res)
}
