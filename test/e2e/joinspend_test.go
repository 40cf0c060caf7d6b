package e2e

import (
	"net/http"
	"sync"
	"testing"

	"ward.dev/ward/test/wardtest"
)

// TestJoinTokenSpentOnlyOnSuccess sends join requests that ward rejects
// for a reason other than the token, each with the same valid token. A
// token is spent only when a certificate is issued, so it must still work
// afterwards.
func TestJoinTokenSpentOnlyOnSuccess(t *testing.T) {
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	client := s.HTTPClient()

	cases := []struct {
		name       string
		body       map[string]string
		wantStatus int
	}{
		{"TTL above maximum", map[string]string{"csr": string(newCSR(t, id)), "ttl": "25h"}, http.StatusBadRequest},
		{"invalid TTL", map[string]string{"csr": string(newCSR(t, id)), "ttl": "soon"}, http.StatusBadRequest},
		{"CSR for another SPIFFE ID", map[string]string{"csr": string(newCSR(t, "spiffe://ward.test/ns/shop/sa/orders"))}, http.StatusBadRequest},
		{"CSR with a DNS SAN not allowed", map[string]string{"csr": string(newCSRWithDNS(t, "db.internal"))}, http.StatusForbidden},
		{"malformed CSR", map[string]string{"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := createJoinTokenAPI(t, s, id, "10m").token

			body := map[string]string{"join_token": token}
			for k, v := range tc.body {
				body[k] = v
			}
			status, resp := s.DoWith(t, client, "", http.MethodPost, "/v1/auth/join", body)
			if status != tc.wantStatus {
				t.Errorf("POST /v1/auth/join (%s) = %d %q, want %d", tc.name, status, wardtest.ErrorMessage(resp), tc.wantStatus)
			}

			status, resp = s.DoWith(t, client, "", http.MethodPost, "/v1/auth/join",
				map[string]string{"join_token": token, "csr": string(newCSR(t, id))})
			if status != http.StatusOK {
				t.Errorf("POST /v1/auth/join with the same token after a rejected request (%s) = %d %q, want 200: the rejected request spent the token",
					tc.name, status, wardtest.ErrorMessage(resp))
			}
		})
	}
}

// TestJoinTokenConcurrentUse races several exchanges of one join token:
// exactly one may succeed.
func TestJoinTokenConcurrentUse(t *testing.T) {
	const racers = 8
	s := startDev(t)
	const id = "spiffe://ward.test/ns/shop/sa/web"
	token := createJoinTokenAPI(t, s, id, "10m").token
	client := s.HTTPClient()

	csrs := make([]string, racers)
	for i := range csrs {
		csrs[i] = string(newCSR(t, id))
	}
	statuses := make([]int, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// A transport error leaves status 0, which the check below reports.
			statuses[i], _, _ = postJSON(client, s.Addr()+"/v1/auth/join", "",
				map[string]string{"join_token": token, "csr": csrs[i]})
		}()
	}
	close(start)
	wg.Wait()

	ok, unauthorized := 0, 0
	for _, st := range statuses {
		switch st {
		case http.StatusOK:
			ok++
		case http.StatusUnauthorized:
			unauthorized++
		}
	}
	if ok != 1 || unauthorized != racers-1 {
		t.Errorf("%d concurrent joins with one token: statuses %v, want one 200 and %d 401", racers, statuses, racers-1)
	}
	if leases := listLeases(t, s, "x509/"+id+"/"); len(leases) != 1 {
		t.Errorf("%d leases for %s after the race, want 1", len(leases), id)
	}
}
