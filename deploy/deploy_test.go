// Package deploy_test checks the deployment files: the kustomize tree under
// k8s renders and every object decodes strictly as its Kubernetes type, the
// Dockerfile builds the binary with the Makefile's command, and the example
// configurations load.
package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"ward.dev/ward/broker/agent"
	"ward.dev/ward/internal/config"
)

// typed returns an empty object of the Go type for apiVersion and kind.
func typed(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/Namespace":
		return &corev1.Namespace{}, true
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}, true
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, true
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	}
	return nil, false
}

// decodeAll splits a multi-document YAML stream and decodes each document
// strictly into its Kubernetes type: an unknown field or kind fails.
func decodeAll(t *testing.T, stream []byte) map[string]any {
	t.Helper()
	objects := map[string]any{}
	dec := yaml.NewDecoder(bytes.NewReader(stream))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML: %v", err)
		}
		apiVersion, _ := doc["apiVersion"].(string)
		kind, _ := doc["kind"].(string)
		meta, _ := doc["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		obj, ok := typed(apiVersion, kind)
		if !ok {
			t.Errorf("object %s %s/%s has no Go type in this test", apiVersion, kind, name)
			continue
		}
		raw, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		jd := json.NewDecoder(bytes.NewReader(raw))
		jd.DisallowUnknownFields()
		if err := jd.Decode(obj); err != nil {
			t.Errorf("%s %s does not decode strictly: %v", kind, name, err)
			continue
		}
		objects[kind+"/"+name] = obj
	}
	return objects
}

func TestKustomizeRendersWithKrusty(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := k.Run(filesys.MakeFsOnDisk(), "k8s")
	if err != nil {
		t.Fatalf("kustomize build k8s = %v", err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	checkObjects(t, decodeAll(t, out))
}

func TestKustomizeRendersWithKubectl(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not found in PATH: the kubectl kustomize check is skipped; TestKustomizeRendersWithKrusty covers the same tree")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", "k8s").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize k8s = %v", err)
	}
	checkObjects(t, decodeAll(t, out))
}

// checkObjects checks the objects the deployment depends on.
func checkObjects(t *testing.T, objects map[string]any) {
	t.Helper()
	want := []string{
		"Namespace/ward-system", "Deployment/ward", "Service/ward", "Deployment/ward-injector",
		"Service/ward-injector", "MutatingWebhookConfiguration/ward-injector",
		"ClusterRoleBinding/ward-auth-delegator", "NetworkPolicy/default-deny", "ServiceAccount/ward",
	}
	for _, key := range want {
		if _, ok := objects[key]; !ok {
			t.Errorf("rendered output lacks %s", key)
		}
	}

	ns, _ := objects["Namespace/ward-system"].(*corev1.Namespace)
	if ns != nil && ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		t.Errorf("namespace enforce label = %q, want restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	}
	for _, name := range []string{"Deployment/ward", "Deployment/ward-injector"} {
		d, _ := objects[name].(*appsv1.Deployment)
		if d == nil {
			continue
		}
		checkRestricted(t, name, &d.Spec.Template.Spec)
		if d.Namespace != "ward-system" {
			t.Errorf("%s namespace = %q, want ward-system", name, d.Namespace)
		}
	}

	wh, _ := objects["MutatingWebhookConfiguration/ward-injector"].(*admissionregistrationv1.MutatingWebhookConfiguration)
	if wh != nil {
		w := wh.Webhooks[0]
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("webhook failurePolicy = %v, want Fail", w.FailurePolicy)
		}
		if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
			t.Errorf("admissionReviewVersions = %v, want [v1]", w.AdmissionReviewVersions)
		}
		if ops := w.Rules[0].Operations; !slices.Equal(ops, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
			t.Errorf("webhook operations = %v, want [CREATE]", ops)
		}
		if w.ClientConfig.Service == nil || w.ClientConfig.Service.Name != "ward-injector" || w.ClientConfig.Service.Namespace != "ward-system" {
			t.Errorf("webhook service = %+v, want ward-system/ward-injector", w.ClientConfig.Service)
		}
	}

	cm, _ := objects["Deployment/ward"].(*appsv1.Deployment)
	if cm != nil {
		// The generated ConfigMap has a hash suffix that the Deployment's
		// volume must reference.
		var configName string
		for _, v := range cm.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				configName = v.ConfigMap.Name
			}
		}
		c, ok := objects["ConfigMap/"+configName].(*corev1.ConfigMap)
		if !ok {
			t.Fatalf("Deployment/ward mounts ConfigMap %q, which is not rendered", configName)
		}
		if _, err := config.Parse("ward.yaml", []byte(c.Data["ward.yaml"])); err != nil {
			t.Errorf("server configuration in the ConfigMap: %v", err)
		}
		if img := cm.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/ward-dev/ward:0.1.0" {
			t.Errorf("server image = %s, want the kustomize images entry", img)
		}
	}
}

// checkRestricted checks a pod against the restricted Pod Security
// Standard's container rules.
func checkRestricted(t *testing.T, name string, spec *corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot not true", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile not RuntimeDefault", name)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", name, c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allowPrivilegeEscalation not false", name, c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Errorf("%s/%s: capabilities do not drop ALL", name, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: root file system not read-only", name, c.Name)
		}
	}
}

// goBuildLine returns the arguments of the `go build` command in text.
func goBuildLine(t *testing.T, file string, text string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)(?:go|\$\(GO\)) build ([^\n\\]+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s has no go build command", file)
	}
	return shellFields(m[1])
}

// shellFields splits a command line on spaces outside single or double
// quotes and drops the quotes, which is all these build lines use.
func shellFields(s string) []string {
	var fields []string
	var cur strings.Builder
	var quote rune
	inField := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inField = r, true
		case r == ' ' || r == '\t':
			if inField {
				fields = append(fields, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteRune(r)
			inField = true
		}
	}
	if inField {
		fields = append(fields, cur.String())
	}
	return fields
}

// TestDockerfileBuildMatchesMakefile compares the Dockerfile's go build
// with the Makefile's, then runs the Dockerfile's line without Docker and
// checks that the binary reports the version it was given.
func TestDockerfileBuildMatchesMakefile(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	docker := goBuildLine(t, "Dockerfile", string(dockerfile))
	makeLine := goBuildLine(t, "Makefile", string(makefile))

	// Expand the variables of each file to compare like with like.
	expand := func(args []string, vars map[string]string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			for k, v := range vars {
				a = strings.ReplaceAll(a, k, v)
			}
			out[i] = a
		}
		return out
	}
	const version = "deploy-test"
	docker = expand(docker, map[string]string{"${VERSION}": version, "/out/ward": "OUT"})
	makeLine = expand(makeLine, map[string]string{"$(LDFLAGS)": "-X ward.dev/ward/internal/version.Version=" + version, "$(BIN)": "OUT"})
	if !slices.Equal(docker, makeLine) {
		t.Fatalf("Dockerfile go build %q differs from the Makefile's %q", docker, makeLine)
	}

	if testing.Short() {
		t.Skip("-short: not building the binary")
	}
	out := filepath.Join(t.TempDir(), "ward")
	args := expand(docker, map[string]string{"OUT": out})
	// `make test` runs `make build` first with the same flags, so the
	// packages come from the build cache. A cold cache compiles
	// pg_query_go's C sources, which takes minutes on a small machine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", append([]string{"build"}, args...)...)
	build.Dir = ".."
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s = %v\n%s", strings.Join(args, " "), err, msg)
	}
	got, err := exec.CommandContext(ctx, out, "version").Output()
	if err != nil {
		t.Fatalf("ward version = %v", err)
	}
	if want := "ward " + version + "\n"; string(got) != want {
		t.Errorf("ward version = %q, want %q", got, want)
	}
}

func TestExampleConfigsLoad(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("examples", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.ParseConfig("examples/agent.yaml", data)
	if err != nil {
		t.Fatalf("examples/agent.yaml: %v", err)
	}
	for _, tmpl := range cfg.Templates {
		if err := agent.CheckTemplate(tmpl.Name, tmpl.Inline); err != nil {
			t.Errorf("examples/agent.yaml template %s: %v", tmpl.Name, err)
		}
	}

	data, err = os.ReadFile(filepath.Join("examples", "ward.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.Parse("examples/ward.yaml", data); err != nil {
		t.Errorf("examples/ward.yaml: %v", err)
	}
}

func TestSystemdUnitsVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: unit files not verified")
	}
	for _, unit := range []string{"ward.service", "ward-agent@.service"} {
		path, _ := filepath.Abs(filepath.Join("systemd", unit))
		if unit == "ward-agent@.service" {
			// Templates are verified through an instance name.
			inst := filepath.Join(t.TempDir(), "ward-agent@orders.service")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(inst, b, 0o644); err != nil {
				t.Fatal(err)
			}
			path = inst
		}
		out, _ := exec.Command(analyze, "verify", path).CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			// The binary is not installed on the test machine; any other
			// complaint is a mistake in the unit.
			if line == "" || strings.Contains(line, "/usr/local/bin/ward") || strings.Contains(line, "%i.service") || strings.Contains(line, "orders.service") {
				continue
			}
			t.Errorf("systemd-analyze verify %s: %s", unit, line)
		}
	}
}
