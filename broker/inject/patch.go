package inject

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	"ward.dev/ward/broker/agent"
)

// agentUID is the user the agent containers run as: the distroless
// "nonroot" user, which the image also defaults to.
const agentUID = 65532

// maxAnnotationsSize bounds the generated agent configuration; the API
// server limits all of a pod's annotations to 256 KiB together.
const maxAnnotationsSize = 128 << 10

// operation is one RFC 6902 JSON Patch operation.
type operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// patch returns the operations that inject the agent into pod.
func (in *Injector) patch(pod *corev1.Pod) ([]operation, error) {
	agentYAML, initOnly, err := in.agentConfig(pod)
	if err != nil {
		return nil, err
	}
	for _, v := range pod.Spec.Volumes {
		if slices.Contains([]string{SecretsVolume, ConfigVolume, TokenVolume, CAVolume}, v.Name) {
			return nil, fmt.Errorf("%w: the pod already has a volume named %q", ErrCannotInject, v.Name)
		}
	}

	var ops []operation
	ops = append(ops,
		operation{"add", "/metadata/annotations/" + escape(AnnotationAgentConfig), agentYAML},
		operation{"add", "/metadata/annotations/" + escape(AnnotationInjected), "true"},
	)

	volumes := in.volumes()
	if pod.Spec.Volumes == nil {
		ops = append(ops, operation{"add", "/spec/volumes", volumes})
	} else {
		for _, v := range volumes {
			ops = append(ops, operation{"add", "/spec/volumes/-", v})
		}
	}

	// The init container goes first, so the credentials exist before any
	// other init container or the application starts.
	initC := in.container(InitContainerName, true)
	if pod.Spec.InitContainers == nil {
		ops = append(ops, operation{"add", "/spec/initContainers", []corev1.Container{initC}})
	} else {
		ops = append(ops, operation{"add", "/spec/initContainers/0", initC})
	}

	mount := corev1.VolumeMount{Name: SecretsVolume, MountPath: SecretsPath, ReadOnly: true}
	for i, c := range pod.Spec.Containers {
		base := "/spec/containers/" + strconv.Itoa(i) + "/volumeMounts"
		if c.VolumeMounts == nil {
			ops = append(ops, operation{"add", base, []corev1.VolumeMount{mount}})
		} else {
			ops = append(ops, operation{"add", base + "/-", mount})
		}
	}
	if !initOnly {
		ops = append(ops, operation{"add", "/spec/containers/-", in.container(SidecarName, false)})
	}
	return ops, nil
}

// escape encodes a JSON Pointer reference token (RFC 6901).
func escape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

func (in *Injector) volumes() []corev1.Volume {
	secretsSize := resource.MustParse("16Mi")
	expiry := in.cfg.TokenSeconds
	return []corev1.Volume{
		{Name: SecretsVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: &secretsSize,
		}}},
		{Name: ConfigVolume, VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
			Items: []corev1.DownwardAPIVolumeFile{{
				Path:     "agent.yaml",
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.annotations['" + AnnotationAgentConfig + "']"},
			}},
		}}},
		{Name: TokenVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: in.cfg.TokenAudience, ExpirationSeconds: &expiry, Path: "token",
			}}},
		}}},
		{Name: CAVolume, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: in.cfg.CAConfigMap},
			Items:                []corev1.KeyToPath{{Key: "ca.pem", Path: "ca.pem"}},
		}}},
	}
}

// container returns the init container or the sidecar: non-root, no
// privilege escalation, no capabilities, read-only root file system, the
// runtime's default seccomp profile (the "restricted" Pod Security
// Standard).
func (in *Injector) container(name string, initOnly bool) corev1.Container {
	args := []string{"agent", "--config", ConfigPath + "/agent.yaml"}
	if initOnly {
		args = append(args, "--init-only")
	}
	uid := int64(agentUID)
	no, yes := false, true
	c := corev1.Container{
		Name:  name,
		Image: in.cfg.AgentImage,
		Args:  args,
		VolumeMounts: []corev1.VolumeMount{
			{Name: SecretsVolume, MountPath: SecretsPath},
			{Name: ConfigVolume, MountPath: ConfigPath, ReadOnly: true},
			{Name: TokenVolume, MountPath: TokenPath, ReadOnly: true},
			{Name: CAVolume, MountPath: CAPath, ReadOnly: true},
		},
		// One agent process measured 47 MiB resident; the limit leaves room
		// for many credentials and Workload API clients.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             &yes,
			RunAsUser:                &uid,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if !initOnly {
		probe := func(path string) *corev1.Probe {
			return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromInt32(HealthPort),
			}}, PeriodSeconds: 10}
		}
		c.ReadinessProbe = probe("/readyz")
		c.LivenessProbe = probe("/healthz")
	}
	return c
}

// agentConfig turns the pod's annotations into the agent's YAML and checks
// it with the agent's own parser, so a pod is never started with a
// configuration its agent would reject.
func (in *Injector) agentConfig(pod *corev1.Pod) (string, bool, error) {
	initOnly := false
	switch v := pod.Annotations[AnnotationInitOnly]; v {
	case "", "false":
	case "true":
		initOnly = true
	default:
		return "", false, fmt.Errorf("%w: annotation %s: invalid value %q, want \"true\" or \"false\"", ErrCannotInject, AnnotationInitOnly, v)
	}

	var creds, templates []map[string]any
	keys := make([]string, 0, len(pod.Annotations))
	for k := range pod.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := pod.Annotations[k]
		if name, ok := strings.CutPrefix(k, AnnotationSecretPrefix); ok {
			c := map[string]any{"name": name, "path": credentialPath(v, pod.Annotations[AnnotationSPIFFEID]), "mode": "0640"}
			if aud := pod.Annotations[AnnotationAudiencePrefix+name]; aud != "" {
				c["audience"] = strings.Split(aud, ",")
			}
			creds = append(creds, c)
		}
		if name, ok := strings.CutPrefix(k, AnnotationTemplatePrefix); ok {
			templates = append(templates, map[string]any{"name": name, "inline": v, "destination": name, "mode": "0640"})
		}
	}
	if len(creds) == 0 && len(templates) == 0 {
		return "", false, fmt.Errorf("%w: no %s<name> annotation names a credential", ErrCannotInject, AnnotationSecretPrefix)
	}

	doc := map[string]any{
		"broker":       map[string]any{"addr": in.cfg.BrokerAddr, "ca_file": CAPath + "/ca.pem"},
		"auth":         map[string]any{"method": agent.AuthKubernetes, "token_file": TokenPath + "/token"},
		"identity_ttl": in.cfg.IdentityTTL,
		"output_dir":   SecretsPath,
		"credentials":  creds,
		"workload_api": map[string]any{"socket": SecretsPath + "/agent.sock"},
		"health":       map[string]any{"listen": ":" + strconv.Itoa(HealthPort)},
	}
	if len(templates) > 0 {
		doc["templates"] = templates
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrCannotInject, err)
	}
	if len(out) > maxAnnotationsSize {
		return "", false, fmt.Errorf("%w: generated agent configuration is %d bytes, more than %d", ErrCannotInject, len(out), maxAnnotationsSize)
	}
	if _, err := agent.ParseConfig("annotations", out); err != nil {
		return "", false, fmt.Errorf("%w: %v", ErrCannotInject, annotationError(err))
	}
	if err := in.checkTemplates(templates); err != nil {
		return "", false, err
	}
	return string(out), initOnly, nil
}

// credentialPath expands a bare "x509" to the pod's SPIFFE ID when the
// ward.dev/spiffe-id annotation names one.
func credentialPath(path, spiffeID string) string {
	if spiffeID != "" && (path == "x509" || path == "jwt") {
		return path + "/" + spiffeID
	}
	return path
}

// annotationError rewrites the agent parser's message, which refers to the
// generated YAML, so that it names the annotations instead.
func annotationError(err error) error {
	msg := strings.TrimPrefix(err.Error(), agent.ErrInvalidConfig.Error()+": ")
	msg = generatedLine.ReplaceAllString(msg, "")
	msg = credentialIndex.ReplaceAllString(msg, "annotation "+AnnotationSecretPrefix+"$1: invalid name")
	msg = templateIndex.ReplaceAllString(msg, "annotation "+AnnotationTemplatePrefix+"$1: invalid name")
	msg = credentialRef.ReplaceAllString(msg, "annotation "+AnnotationSecretPrefix+"$1")
	msg = templateRef.ReplaceAllString(msg, "annotation "+AnnotationTemplatePrefix+"$1")
	msg = strings.ReplaceAll(msg, "audience: missing, a JWT-SVID needs at least one", "audience missing: a JWT-SVID needs a "+AnnotationAudiencePrefix+"<name> annotation")
	return fmt.Errorf("invalid annotations: %s", msg)
}

var (
	generatedLine   = regexp.MustCompile(`annotations(:\d+)?: `)
	credentialRef   = regexp.MustCompile(`credential "([^"]*)"`)
	credentialIndex = regexp.MustCompile(`credentials\[\d+\]: invalid name "([^"]*)"`)
	templateIndex   = regexp.MustCompile(`templates\[\d+\]: invalid name "([^"]*)"`)
	templateRef     = regexp.MustCompile(`template "([^"]*)"`)
)

// checkTemplates parses each template annotation as the agent will.
func (in *Injector) checkTemplates(templates []map[string]any) error {
	for _, t := range templates {
		name, _ := t["name"].(string)
		text, _ := t["inline"].(string)
		if err := agent.CheckTemplate(name, text); err != nil {
			return fmt.Errorf("%w: annotation %s%s: %v", ErrCannotInject, AnnotationTemplatePrefix, name, err)
		}
	}
	return nil
}
