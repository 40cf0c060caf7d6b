package vault_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"ward.dev/ward/broker/vault"
)

func TestKVReadRecordsVersion(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		tg.putKV(t, "kvtest", "shop/db", map[string]any{"password": "first"})
		want := tg.putKV(t, "kvtest", "shop/db", map[string]any{"password": "second", "port": 5432})
		iss := vault.NewIssuer(tg.newClient(t, vault.Options{}))

		cred, meta, err := iss.Issue(ctx, "kv/kvtest/shop/db", "spiffe://ward.test/shop", time.Time{})
		if err != nil {
			t.Fatalf("Issue(kv) = %v, want nil", err)
		}
		if got := string(cred.Data["password"].Reveal()); got != "second" {
			t.Errorf("Data[password] = %q, want the latest version's second", got)
		}
		if got := string(cred.Data["port"].Reveal()); got != "5432" {
			t.Errorf("Data[port] = %q, want JSON 5432", got)
		}
		if cred.Version != want || meta[vault.MetaVersion] != fmt.Sprint(want) {
			t.Errorf("Version = %d, meta version %q; want %d", cred.Version, meta[vault.MetaVersion], want)
		}
		if err := iss.Renew(ctx, meta, time.Now().Add(time.Hour)); err != nil {
			t.Errorf("Renew(kv) = %v, want nil", err)
		}
		if err := iss.Revoke(ctx, meta); err != nil {
			t.Errorf("Revoke(kv) = %v, want nil", err)
		}

		_, _, err = iss.Issue(ctx, "kv/kvtest/shop/missing", "spiffe://ward.test/shop", time.Time{})
		if !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("Issue(missing kv) = %v, want ErrNotFound", err)
		}
	})
}

func TestDatabaseCredsLifecycle(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		path := tg.databaseRole(t, "readonly", 10*time.Minute, 2*time.Hour)
		iss := vault.NewIssuer(tg.newClient(t, vault.Options{}))

		cred, meta, err := iss.Issue(ctx, path, "spiffe://ward.test/shop", time.Now().Add(30*time.Minute))
		if err != nil {
			t.Fatalf("Issue(%s) = %v, want nil", path, err)
		}
		if cred.Username == "" || cred.Password.Len() == 0 || meta[vault.MetaLeaseID] == "" {
			t.Fatalf("Issue(%s) = username %q, %d password bytes, meta %v; want all set", path, cred.Username, cred.Password.Len(), meta)
		}
		if d := time.Until(cred.ExpiresAt); d < 29*time.Minute || d > 31*time.Minute {
			t.Errorf("ExpiresAt in %v, want the requested 30m (Vault's default 10m renewed)", d)
		}

		if err := iss.Renew(ctx, meta, time.Now().Add(time.Hour)); err != nil {
			t.Errorf("Renew(+1h) = %v, want nil", err)
		}
		err = iss.Renew(ctx, meta, time.Now().Add(5*time.Hour))
		var short *vault.ShortRenewalError
		if !errors.Is(err, vault.ErrBeyondMaxTTL) || !errors.As(err, &short) {
			t.Errorf("Renew(+5h) past max_ttl = %v, want *ShortRenewalError", err)
		} else if d := time.Until(short.Granted); d > 2*time.Hour+time.Second {
			t.Errorf("ShortRenewalError.Granted in %v, want at most the 2h max_ttl", d)
		}

		if err := iss.Revoke(ctx, meta); err != nil {
			t.Fatalf("Revoke = %v, want nil", err)
		}
		if tg.stand != nil && tg.stand.LeaseActive(meta[vault.MetaLeaseID]) {
			t.Error("lease still active in Vault after Revoke")
		}
		if err := iss.Revoke(ctx, meta); err != nil {
			t.Errorf("second Revoke = %v, want nil for a lease Vault no longer knows", err)
		}
		if err := iss.Renew(ctx, meta, time.Now().Add(time.Hour)); !errors.Is(err, vault.ErrGone) {
			t.Errorf("Renew after Revoke = %v, want ErrGone", err)
		}
	})
}

func TestRevokeManyEndsEveryLease(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		path := tg.databaseRole(t, "many", 10*time.Minute, time.Hour)
		iss := vault.NewIssuer(tg.newClient(t, vault.Options{}))
		iss.RevokeConcurrency = 3

		var metas []map[string]string
		for range 12 {
			_, meta, err := iss.Issue(ctx, path, "spiffe://ward.test/shop", time.Time{})
			if err != nil {
				t.Fatalf("Issue = %v", err)
			}
			metas = append(metas, meta)
		}
		for i, err := range iss.RevokeMany(ctx, metas) {
			if err != nil {
				t.Errorf("RevokeMany[%d] = %v, want nil", i, err)
			}
		}
		if tg.stand == nil {
			return
		}
		for _, meta := range metas {
			if tg.stand.LeaseActive(meta[vault.MetaLeaseID]) {
				t.Errorf("lease %s active after RevokeMany", meta[vault.MetaLeaseID])
			}
		}
	})
}

func TestRevokeEachBoundsConcurrency(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		ctx := context.Background()
		path := tg.databaseRole(t, "sweep", 10*time.Minute, time.Hour)
		c := tg.newClient(t, vault.Options{})

		// Issue straight through the API, so the sweep's own requests
		// are the only concurrent ones.
		const leases = 2000
		ids := make([]string, leases)
		for i := range ids {
			s, err := c.API().Logical().Read(path)
			if err != nil {
				t.Fatalf("reading %s: %v", path, err)
			}
			ids[i] = s.LeaseID
		}

		iss := vault.NewIssuer(c)
		iss.RevokeConcurrency = 4
		seq := func(yield func(map[string]string) bool) {
			for _, id := range ids {
				if !yield(map[string]string{vault.MetaType: "lease", vault.MetaLeaseID: id}) {
					return
				}
			}
		}
		revoked := 0
		iss.RevokeEach(ctx, seq, func(n int, err error) {
			if err != nil {
				t.Errorf("lease %d: Revoke = %v", n, err)
			}
			revoked++
		})

		if revoked != leases {
			t.Errorf("RevokeEach reported %d results, want %d", revoked, leases)
		}
		if got := tg.stand.MaxInFlight(); got > 4 || got < 2 {
			t.Errorf("max concurrent requests = %d, want 2 to 4 (RevokeConcurrency)", got)
		}
		for _, id := range ids {
			if tg.stand.LeaseActive(id) {
				t.Fatalf("lease %s active after RevokeEach", id)
			}
		}
	})
}

func TestSealedVaultUnavailable(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		tg.standinOnly(t)
		ctx := context.Background()
		path := tg.databaseRole(t, "sealed", 10*time.Minute, time.Hour)
		iss := vault.NewIssuer(tg.newClient(t, vault.Options{}))
		_, meta, err := iss.Issue(ctx, path, "s", time.Time{})
		if err != nil {
			t.Fatalf("Issue before sealing = %v", err)
		}

		tg.stand.Seal()
		_, _, err = iss.Issue(ctx, path, "s", time.Time{})
		var unavailable *vault.UnavailableError
		if !errors.As(err, &unavailable) || !errors.Is(err, vault.ErrUnavailable) {
			t.Fatalf("Issue while sealed = %v, want *UnavailableError", err)
		}
		if !strings.Contains(unavailable.BackendName(), tg.addr) || unavailable.RetryAfter() <= 0 {
			t.Errorf("UnavailableError names %q, retry after %v; want %s and a positive delay", unavailable.BackendName(), unavailable.RetryAfter(), tg.addr)
		}
		if err := iss.Renew(ctx, meta, time.Now().Add(time.Hour)); !errors.Is(err, vault.ErrUnavailable) {
			t.Errorf("Renew while sealed = %v, want ErrUnavailable", err)
		}

		tg.stand.Unseal()
		if _, _, err := iss.Issue(ctx, path, "s", time.Time{}); err != nil {
			t.Errorf("Issue after unsealing = %v, want nil", err)
		}
		if err := iss.Revoke(ctx, meta); err != nil {
			t.Errorf("Revoke after unsealing = %v, want nil", err)
		}
	})
}

func TestUnreachableVaultUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + l.Addr().String()
	l.Close()

	c, err := vault.New(context.Background(), vault.Config{Address: addr, Auth: vault.Auth{Method: "token", Token: tokenFile(t, "hvs.x")}}, vault.Options{RetryMin: time.Hour})
	if err != nil {
		t.Fatalf("New with Vault down = %v, want a client that retries", err)
	}
	defer c.Close()
	_, _, err = vault.NewIssuer(c).Issue(context.Background(), "kv/secret/x", "s", time.Time{})
	if !errors.Is(err, vault.ErrUnavailable) {
		t.Errorf("Issue with Vault down = %v, want ErrUnavailable", err)
	}
}

func TestSignCSR(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		role := tg.pkiRole(t)
		c := tg.newClient(t, vault.Options{})
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		spiffeID, _ := url.Parse("spiffe://ward.test/ns/shop/sa/web")
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web"}, URIs: []*url.URL{spiffeID}}, key)
		if err != nil {
			t.Fatal(err)
		}

		got, err := c.SignCSR(context.Background(), vault.SignRequest{
			Role: role, CSR: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			CommonName: "web", URISANs: []string{spiffeID.String()}, TTL: 30 * time.Minute,
			DNSNames: []string{"web.internal"}, IPSANs: []string{"127.0.0.1"},
		})
		if err != nil {
			t.Fatalf("SignCSR = %v, want nil", err)
		}
		block, _ := pem.Decode(got.CertificatePEM)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("parsing the signed certificate: %v", err)
		}
		if len(cert.URIs) != 1 || cert.URIs[0].String() != spiffeID.String() {
			t.Errorf("certificate URIs = %v, want [%s]", cert.URIs, spiffeID)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(got.ChainPEM) {
			t.Fatalf("ChainPEM holds no certificate: %q", got.ChainPEM)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("certificate does not verify against ChainPEM: %v", err)
		}
		if got.Serial == "" || got.NotAfter.IsZero() {
			t.Errorf("Serial %q, NotAfter %v; want both set", got.Serial, got.NotAfter)
		}
		if !slices.Contains(cert.DNSNames, "web.internal") || len(cert.IPAddresses) != 1 || cert.IPAddresses[0].String() != "127.0.0.1" {
			t.Errorf("certificate DNS names %v and IPs %v, want web.internal and 127.0.0.1", cert.DNSNames, cert.IPAddresses)
		}

		if err := c.RevokeCert(context.Background(), "", got.Serial); err != nil {
			t.Errorf("RevokeCert(%s) = %v, want nil", got.Serial, err)
		}
		if err := c.RevokeCert(context.Background(), "", "01:02:03"); !errors.Is(err, vault.ErrNotFound) {
			t.Errorf("RevokeCert(unknown serial) = %v, want ErrNotFound", err)
		}
	})
}

func TestTransitRoundTrip(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		mount := tg.transitMount(t)
		c := tg.newClient(t, vault.Options{})

		ct, err := c.Encrypt(ctx, mount, "ward-test", []byte("data key"))
		if err != nil {
			t.Fatalf("Encrypt = %v", err)
		}
		pt, err := c.Decrypt(ctx, mount, "ward-test", ct)
		if err != nil || !pt.Equal([]byte("data key")) {
			t.Errorf("Decrypt(Encrypt(x)) = %v, %v; want x", pt, err)
		}

		tampered := ct[:len(ct)-4] + "AAA="
		if _, err := c.Decrypt(ctx, mount, "ward-test", tampered); err == nil {
			t.Error("Decrypt of a tampered ciphertext = nil error, want failure")
		}
	})
}

func TestLogsHoldNoSecrets(t *testing.T) {
	each(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		var logs logBuffer
		path := tg.databaseRole(t, "logged", 10*time.Minute, time.Hour)
		tg.putKV(t, "kvtest", "logged", map[string]any{"api_key": "kv-secret-value-7781"})
		iss := vault.NewIssuer(tg.newClient(t, vault.Options{Logger: logs.logger()}))

		cred, meta, err := iss.Issue(ctx, path, "s", time.Now().Add(20*time.Minute))
		if err != nil {
			t.Fatalf("Issue = %v", err)
		}
		if err := iss.Renew(ctx, meta, time.Now().Add(30*time.Minute)); err != nil {
			t.Fatalf("Renew = %v", err)
		}
		if err := iss.Revoke(ctx, meta); err != nil {
			t.Fatalf("Revoke = %v", err)
		}
		if _, _, err := iss.Issue(ctx, "kv/kvtest/logged", "s", time.Time{}); err != nil {
			t.Fatalf("Issue(kv) = %v", err)
		}

		out := logs.String()
		if !strings.Contains(out, "vault lease revoked") {
			t.Fatalf("captured log lacks the revocation line, so the capture is broken:\n%s", out)
		}
		for _, s := range []string{string(cred.Password.Reveal()), "kv-secret-value-7781", tg.root} {
			if strings.Contains(out, s) {
				t.Errorf("log contains secret %q:\n%s", s, out)
			}
		}
	})
}

// leaseBackend is the shape in which ward's lease manager calls an issuer
// of one credential kind.
type leaseBackend[C any] interface {
	Issue(ctx context.Context, role, subject string, expiresAt time.Time) (C, map[string]string, error)
	Renew(ctx context.Context, meta map[string]string, newExpiry time.Time) error
	Revoke(ctx context.Context, meta map[string]string) error
}

var _ leaseBackend[vault.Credential] = (*vault.Issuer)(nil)

func TestRevokeManyCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	iss := vault.NewIssuer(nil)
	metas := []map[string]string{{vault.MetaType: "lease", vault.MetaLeaseID: "a"}, {vault.MetaType: "lease", vault.MetaLeaseID: "b"}}
	for i, err := range iss.RevokeMany(ctx, metas) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RevokeMany with a canceled context [%d] = %v, want context.Canceled", i, err)
		}
	}
}
