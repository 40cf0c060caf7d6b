package inject_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/broker/inject"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func newInjector(t testing.TB, failOpen bool) *inject.Injector {
	t.Helper()
	in, err := inject.New(inject.Config{
		AgentImage:  "ghcr.io/ward/ward:0.1.0",
		BrokerAddr:  "https://ward.ward-system.svc:8443",
		CAConfigMap: "ward-ca",
		FailOpen:    failOpen,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// loadReview reads an AdmissionReview from testdata.
func loadReview(t *testing.T, name string) (*admissionv1.AdmissionReview, []byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &review); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &review, review.Request.Object.Raw
}

// decodeStrict decodes a pod and fails on any field corev1.Pod lacks.
func decodeStrict(t *testing.T, raw []byte) *corev1.Pod {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var pod corev1.Pod
	if err := dec.Decode(&pod); err != nil {
		t.Fatalf("patched pod does not decode strictly as corev1.Pod: %v", err)
	}
	return &pod
}

// applyPatch applies the response's JSONPatch to the request's pod with
// evanphx/json-patch, as the API server would.
func applyPatch(t *testing.T, resp *admissionv1.AdmissionResponse, pod []byte) []byte {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("PatchType = %v, want JSONPatch", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("DecodePatch = %v", err)
	}
	out, err := patch.Apply(pod)
	if err != nil {
		t.Fatalf("Apply = %v", err)
	}
	return out
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, name(it))
	}
	return out
}

func containerNames(cs []corev1.Container) []string {
	return names(cs, func(c corev1.Container) string { return c.Name })
}

func TestReviewAnnotatedPod(t *testing.T) {
	review, raw := loadReview(t, "annotated-pod.json")
	out := newInjector(t, false).Review(review)
	resp := out.Response
	if !resp.Allowed {
		t.Fatalf("Allowed = false (%v), want true", resp.Result)
	}
	if resp.UID != review.Request.UID {
		t.Errorf("UID = %s, want the request's %s", resp.UID, review.Request.UID)
	}
	patched := applyPatch(t, resp, raw)
	pod := decodeStrict(t, patched)

	if got, want := containerNames(pod.Spec.InitContainers), []string{"ward-agent-init", "migrate"}; !slices.Equal(got, want) {
		t.Errorf("init containers = %v, want %v", got, want)
	}
	if got, want := containerNames(pod.Spec.Containers), []string{"web", "log-shipper", "ward-agent"}; !slices.Equal(got, want) {
		t.Errorf("containers = %v, want %v", got, want)
	}
	gotVolumes := names(pod.Spec.Volumes, func(v corev1.Volume) string { return v.Name })
	if want := []string{"kube-api-access-x2k9p", "ward-secrets", "ward-config", "ward-token", "ward-ca"}; !slices.Equal(gotVolumes, want) {
		t.Errorf("volumes = %v, want %v", gotVolumes, want)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == inject.SecretsVolume && (v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory) {
			t.Errorf("volume %s = %+v, want a memory-backed emptyDir", v.Name, v.VolumeSource)
		}
		if v.Name == inject.TokenVolume && v.Projected.Sources[0].ServiceAccountToken.Audience != "ward" {
			t.Errorf("token volume audience = %q, want ward", v.Projected.Sources[0].ServiceAccountToken.Audience)
		}
	}
	for _, c := range pod.Spec.Containers[:2] {
		mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == inject.SecretsVolume && m.MountPath == "/ward/secrets" && m.ReadOnly
		})
		if !mounted {
			t.Errorf("container %s mounts = %+v, want /ward/secrets read-only", c.Name, c.VolumeMounts)
		}
	}
	initC := pod.Spec.InitContainers[0]
	if !slices.Contains(initC.Args, "--init-only") {
		t.Errorf("init container args = %v, want --init-only", initC.Args)
	}
	sidecar := pod.Spec.Containers[2]
	if slices.Contains(sidecar.Args, "--init-only") || sidecar.ReadinessProbe == nil {
		t.Errorf("sidecar args = %v, readiness probe %v, want no --init-only and a probe", sidecar.Args, sidecar.ReadinessProbe)
	}
	sc := sidecar.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("sidecar security context = %+v, want non-root, no escalation, read-only root", sc)
	}

	if pod.Annotations[inject.AnnotationInjected] != "true" {
		t.Errorf("annotation %s = %q, want true", inject.AnnotationInjected, pod.Annotations[inject.AnnotationInjected])
	}
	cfg, err := agent.ParseConfig("agent.yaml", []byte(pod.Annotations[inject.AnnotationAgentConfig]))
	if err != nil {
		t.Fatalf("generated agent configuration: %v", err)
	}
	gotCreds := names(cfg.Credentials, func(c agent.Credential) string { return c.Name + "=" + c.Path })
	if want := []string{"orders=jwt", "svid=x509"}; !slices.Equal(gotCreds, want) {
		t.Errorf("credentials = %v, want %v", gotCreds, want)
	}
	if got := cfg.Credentials[0].Audience; !slices.Equal(got, []string{"orders.shop"}) {
		t.Errorf("orders audience = %v, want [orders.shop]", got)
	}
	if len(cfg.Templates) != 1 || cfg.Templates[0].Destination != "app.json" {
		t.Errorf("templates = %+v, want app.json", cfg.Templates)
	}
	if cfg.Auth.Method != agent.AuthKubernetes || cfg.OutputDir != "/ward/secrets" {
		t.Errorf("auth %s, output_dir %s, want kubernetes and /ward/secrets", cfg.Auth.Method, cfg.OutputDir)
	}

	golden(t, "annotated-pod.patched.json", patched)
}

func TestReviewInitOnly(t *testing.T) {
	review, raw := loadReview(t, "init-only-pod.json")
	resp := newInjector(t, false).Review(review).Response
	pod := decodeStrict(t, applyPatch(t, resp, raw))
	if got := containerNames(pod.Spec.InitContainers); !slices.Equal(got, []string{"ward-agent-init"}) {
		t.Errorf("init containers = %v, want [ward-agent-init]", got)
	}
	if got := containerNames(pod.Spec.Containers); !slices.Equal(got, []string{"web"}) {
		t.Errorf("containers = %v, want [web] with no sidecar", got)
	}
	cfg, err := agent.ParseConfig("agent.yaml", []byte(pod.Annotations[inject.AnnotationAgentConfig]))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Credentials[0].Path, "x509/spiffe://ward.test/ns/shop/sa/web"; got != want {
		t.Errorf("credential path = %s, want %s from ward.dev/spiffe-id", got, want)
	}
}

// TestReviewUnchanged covers requests that must pass without a patch.
func TestReviewUnchanged(t *testing.T) {
	for _, file := range []string{"plain-pod.json", "injected-pod.json", "update-pod.json"} {
		t.Run(strings.TrimSuffix(file, ".json"), func(t *testing.T) {
			review, _ := loadReview(t, file)
			resp := newInjector(t, false).Review(review).Response
			if !resp.Allowed || resp.Patch != nil || resp.PatchType != nil {
				t.Errorf("Review(%s) = allowed %v, patch %s, want allowed with no patch", file, resp.Allowed, resp.Patch)
			}
			if resp.UID != review.Request.UID {
				t.Errorf("UID = %s, want %s", resp.UID, review.Request.UID)
			}
		})
	}
}

func TestReviewBadAnnotation(t *testing.T) {
	review, _ := loadReview(t, "bad-annotation-pod.json")

	denied := newInjector(t, false).Review(review).Response
	if denied.Allowed {
		t.Fatal("fail-closed Review(bad annotation) = allowed, want denied")
	}
	for _, want := range []string{"ward.dev/secret-db", `unknown credential kind "mongo"`} {
		if !strings.Contains(denied.Result.Message, want) {
			t.Errorf("denial message = %q, want it to contain %q", denied.Result.Message, want)
		}
	}

	open := newInjector(t, true).Review(review).Response
	if !open.Allowed || open.Patch != nil {
		t.Errorf("fail-open Review(bad annotation) = allowed %v, patch %s, want allowed unmodified", open.Allowed, open.Patch)
	}
	if len(open.Warnings) != 1 || !strings.Contains(open.Warnings[0], "mongo") {
		t.Errorf("fail-open warnings = %v, want one naming the problem", open.Warnings)
	}
}

// golden compares got with testdata/golden/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("patched pod differs from %s; run go test -update and review the diff", path)
	}
}

// TestReviewRejectsBadPods denies pods whose annotations or volumes the
// injector cannot turn into a working agent, naming the problem.
func TestReviewRejectsBadPods(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		volume      string // an extra volume name in the pod
		want        string
	}{
		{"template does not parse", map[string]string{"ward.dev/secret-svid": "x509", "ward.dev/template-app": "{{ .Creds"}, "", "ward.dev/template-app"},
		{"no credential", map[string]string{}, "", "no ward.dev/secret-<name> annotation"},
		{"bad init-only", map[string]string{"ward.dev/secret-svid": "x509", "ward.dev/init-only": "yes"}, "", `ward.dev/init-only: invalid value "yes"`},
		{"jwt without audience", map[string]string{"ward.dev/secret-tok": "jwt"}, "", "ward.dev/secret-tok: audience missing: a JWT-SVID needs a ward.dev/audience-<name> annotation"},
		{"bad name", map[string]string{"ward.dev/secret-Bad_Name": "x509"}, "", "annotation ward.dev/secret-Bad_Name: invalid name"},
		{"volume name taken", map[string]string{"ward.dev/secret-svid": "x509"}, "ward-secrets", `volume named "ward-secrets"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			review, raw := loadReview(t, "plain-pod.json")
			var pod map[string]any
			if err := json.Unmarshal(raw, &pod); err != nil {
				t.Fatal(err)
			}
			annotations := map[string]any{"ward.dev/inject": "true"}
			for k, v := range tc.annotations {
				annotations[k] = v
			}
			pod["metadata"].(map[string]any)["annotations"] = annotations
			if tc.volume != "" {
				spec := pod["spec"].(map[string]any)
				spec["volumes"] = append(spec["volumes"].([]any), map[string]any{"name": tc.volume, "emptyDir": map[string]any{}})
			}
			b, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			review.Request.Object.Raw = b

			resp := newInjector(t, false).Review(review).Response
			if resp.Allowed {
				t.Fatalf("Review(%s) = allowed, want denied", tc.name)
			}
			t.Logf("denial: %s", resp.Result.Message)
			if !strings.Contains(resp.Result.Message, tc.want) {
				t.Errorf("denial = %q, want it to contain %q", resp.Result.Message, tc.want)
			}
		})
	}
}
