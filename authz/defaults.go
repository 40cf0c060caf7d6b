package authz

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// File names WriteDefaults uses in its directory.
const (
	ModelFileName  = "model.conf"
	PolicyFileName = "policy.csv"
)

// defaultPolicyTemplate is the development policy. Its arguments: %[1]s is the
// trust domain, %[2]s the admin SPIFFE ID and %[3]s the domain.
const defaultPolicyTemplate = `# ward authorization policy, read with model.conf (Casbin RBAC with domains).
#
# Each line grants or denies one permission:
#
#   p, <subject>, <domain>, <object>, <action>, <effect>
#
#   subject  a SPIFFE ID (spiffe://%[1]s/ns/shop/sa/web), a SPIFFE ID prefix
#            ending in * (spiffe://%[1]s/ns/shop/* is every workload in the
#            shop namespace), or a role (role:<name>). * alone is everyone.
#   domain   the environment the request is made in (prod, staging, dev, ...),
#            or * for every environment.
#   object   the resource: x509/<spiffe-id>, jwt/<spiffe-id>, db/<role>,
#            column/<schema.table.column>, service/<spiffe-id>,
#            lease/<prefix>, policy, token. A trailing * matches any rest
#            (db/* is every database role), and * alone is every object.
#            x509/self means the caller's own SPIFFE ID: it matches
#            x509/<caller's SPIFFE ID>, so the line lets each workload get its
#            own certificate and no one else's. jwt/self does the same for
#            JWT-SVIDs.
#   action   issue, renew, revoke, list, read, write, create, delete,
#            tokenize, detokenize, mask, unmask, connect, reload, check,
#            quarantine, release, or * for every action.
#   effect   allow or deny.
#
# What no line allows is denied, and a matching deny line wins over every
# allow line.
#
# Roles are assigned with g lines:
#
#   g, <spiffe-id or role:<name>>, role:<name>, <domain or *>
#
# A role assigned in domain * holds in every domain. A role may be a member
# of another role.
#
# To grant more, add lines and run "ward policy lint" and then
# "ward policy reload". Examples:
#
#   p, spiffe://%[1]s/ns/shop/sa/orders, %[3]s, db/orders-readonly, issue, allow
#   p, role:support, %[3]s, column/public.customer.email, unmask, allow
#   g, spiffe://%[1]s/ns/support/sa/console, role:support, %[3]s
#   p, spiffe://%[1]s/ns/shop/sa/web, %[3]s, service/spiffe://%[1]s/ns/shop/sa/orders, connect, allow

# The administrator may do everything, in every domain.
p, role:admin, *, *, *, allow
g, %[2]s, role:admin, *

# Workloads in the shop namespace may obtain and renew their own X.509 and
# JWT SVIDs in %[3]s.
p, spiffe://%[1]s/ns/shop/*, %[3]s, x509/self, issue, allow
p, spiffe://%[1]s/ns/shop/*, %[3]s, x509/self, renew, allow
p, spiffe://%[1]s/ns/shop/*, %[3]s, jwt/self, issue, allow
p, spiffe://%[1]s/ns/shop/*, %[3]s, jwt/self, renew, allow
`

// WriteDefaults writes DefaultModel and a development policy into dir, for
// "ward serve --dev". The policy makes adminID an administrator in every
// domain and lets workloads under spiffe://<trustDomain>/ns/shop/ issue and
// renew their own SVIDs in domain. Each file is written only if it does not
// exist, atomically and with mode 0644; an existing file is left as it is.
// A missing dir is created with mode 0700.
func WriteDefaults(dir, trustDomain, adminID, domain string) (modelPath, policyPath string, err error) {
	if err := checkDefaultsInput(trustDomain, adminID, domain); err != nil {
		return "", "", err
	}

	policy := fmt.Sprintf(defaultPolicyTemplate, trustDomain, adminID, domain)
	if _, problems := parsePolicy(PolicyFileName, []byte(policy)); len(problems) > 0 {
		return "", "", fmt.Errorf("authz: default policy for these arguments is invalid: %w", policyError(problems))
	}

	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("authz: create %s: %w", dir, err)
	}

	modelPath = filepath.Join(dir, ModelFileName)
	if err := writeIfAbsent(modelPath, []byte(DefaultModel)); err != nil {
		return "", "", err
	}

	policyPath = filepath.Join(dir, PolicyFileName)
	if err := writeIfAbsent(policyPath, []byte(policy)); err != nil {
		return "", "", err
	}
	return modelPath, policyPath, nil
}

func checkDefaultsInput(trustDomain, adminID, domain string) error {
	if trustDomain == "" || strings.ContainsAny(trustDomain, "/:*,\"# \t\r\n") {
		return fmt.Errorf("authz: trust domain %q is invalid: want a name such as example.org", trustDomain)
	}

	if !strings.HasPrefix(adminID, "spiffe://") || strings.ContainsAny(adminID, "*,\"# \t\r\n") {
		return fmt.Errorf("authz: admin ID %q is invalid: want a SPIFFE ID such as spiffe://%s/admin", adminID, trustDomain)
	}

	if domain == "" || strings.ContainsAny(domain, "*,\"# \t\r\n") {
		return fmt.Errorf("authz: domain %q is invalid: want an environment name such as dev", domain)
	}
	return nil
}

// writeIfAbsent writes data to path through a temporary file in the same
// directory. The hard link that publishes it fails if path exists, so a file
// created meanwhile by someone else is never replaced.
func writeIfAbsent(path string, data []byte) error {
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("authz: write %s: %w", path, err)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("authz: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())

	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("authz: write %s: %w", path, err)
	}

	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("authz: write %s: %w", path, err)
	}

	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("authz: write %s: %w", path, err)
	}

	if err := tmp.Close(); err != nil {
		return fmt.Errorf("authz: write %s: %w", path, err)
	}

	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("authz: write %s: %w", path, err)
	}
	return nil
}
