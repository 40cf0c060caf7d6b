// Package inject is ward's Kubernetes mutating admission webhook
// (admission.k8s.io/v1 AdmissionReview). For a pod annotated
// `ward.dev/inject: "true"` it adds an init container that runs
// `ward agent --init-only`, the agent as a sidecar, a memory-backed volume
// at /ward/secrets mounted into every container, a projected
// service-account token for the agent to authenticate with, and the agent
// configuration generated from the pod's annotations.
//
// Security contract: only CREATE of a pod is mutated; every other request,
// a pod without the annotation and a pod already injected are allowed
// unchanged. A pod the injector cannot handle (malformed annotations, a
// body it cannot decode) is denied with a message naming the problem, or
// allowed unmodified when the injector is configured to fail open. Request
// bodies are bounded, and annotation values are never logged, since a
// template may contain configuration the application owner considers
// private.
package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations the injector reads and writes.
const (
	AnnotationInject         = "ward.dev/inject"
	AnnotationInjected       = "ward.dev/injected"
	AnnotationInitOnly       = "ward.dev/init-only"
	AnnotationSPIFFEID       = "ward.dev/spiffe-id"
	AnnotationAgentConfig    = "ward.dev/agent-config"
	AnnotationSecretPrefix   = "ward.dev/secret-"
	AnnotationTemplatePrefix = "ward.dev/template-"
	AnnotationAudiencePrefix = "ward.dev/audience-"
)

// Names and paths of what the injector adds to a pod.
const (
	InitContainerName = "ward-agent-init"
	SidecarName       = "ward-agent"
	SecretsVolume     = "ward-secrets"
	SecretsPath       = "/ward/secrets"
	ConfigVolume      = "ward-config"
	ConfigPath        = "/ward/config"
	TokenVolume       = "ward-token"
	TokenPath         = "/var/run/secrets/ward"
	CAVolume          = "ward-ca"
	CAPath            = "/ward/ca"
	// HealthPort serves the sidecar's /healthz and /readyz.
	HealthPort = 8099
)

// ErrCannotInject is returned for a pod whose annotations the injector
// cannot turn into an agent configuration.
var ErrCannotInject = errors.New("cannot inject ward agent")

// Config configures the injector.
type Config struct {
	// AgentImage is the image of the init and sidecar containers.
	AgentImage string
	// BrokerAddr is the ward API the agents use, https://host:port.
	BrokerAddr string
	// CAConfigMap is the ConfigMap in the pod's namespace with ward's CA
	// certificate under the key ca.pem.
	CAConfigMap string
	// TokenAudience is the audience of the projected service-account
	// token; the broker accepts only tokens for this audience.
	TokenAudience string
	// TokenSeconds is the lifetime of that token (kubelet renews it).
	TokenSeconds int64
	// FailOpen allows a pod the injector cannot handle, unmodified, instead
	// of denying it.
	FailOpen bool
	// IdentityTTL is the agent's own certificate lifetime, such as "1h".
	IdentityTTL string
}

// Injector builds admission responses. It is safe for concurrent use.
type Injector struct {
	cfg Config
	log *slog.Logger
}

// New returns an injector; cfg is checked for the values a pod needs.
func New(cfg Config, log *slog.Logger) (*Injector, error) {
	if cfg.AgentImage == "" || cfg.BrokerAddr == "" || cfg.CAConfigMap == "" {
		return nil, errors.New("inject: agent image, broker address and CA ConfigMap are required")
	}
	if !strings.HasPrefix(cfg.BrokerAddr, "https://") {
		return nil, fmt.Errorf("inject: invalid broker address %q, want https://host:port", cfg.BrokerAddr)
	}
	if cfg.TokenAudience == "" {
		cfg.TokenAudience = "ward"
	}
	if cfg.TokenSeconds == 0 {
		cfg.TokenSeconds = 3600
	}
	if cfg.TokenSeconds < 600 {
		return nil, errors.New("inject: token lifetime must be at least 600 seconds, the Kubernetes minimum")
	}
	if cfg.IdentityTTL == "" {
		cfg.IdentityTTL = "1h"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Injector{cfg: cfg, log: log}, nil
}

// Review builds the response to one AdmissionReview. The response carries the request's
// UID, and a JSONPatch when the pod is mutated.
func (in *Injector) Review(review *admissionv1.AdmissionReview) *admissionv1.AdmissionReview {
	out := &admissionv1.AdmissionReview{TypeMeta: review.TypeMeta}
	if review.Request == nil {
		out.Response = &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: 400, Message: "AdmissionReview has no request"}}
		return out
	}
	req := review.Request
	out.Response = in.respond(req)
	out.Response.UID = req.UID
	return out
}

func (in *Injector) respond(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.Kind.Group != "" || req.SubResource != "" {
		return allow
	}

	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return in.fail(req, fmt.Errorf("%w: pod does not decode: %v", ErrCannotInject, err))
	}
	if pod.Annotations[AnnotationInject] != "true" {
		return allow
	}
	if pod.Annotations[AnnotationInjected] == "true" || hasContainer(&pod, SidecarName) || hasContainer(&pod, InitContainerName) {
		in.log.Info("pod already injected, left unchanged", "namespace", req.Namespace, "pod", podName(&pod, req))
		return allow
	}

	patch, err := in.patch(&pod)
	if err != nil {
		return in.fail(req, err)
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return in.fail(req, fmt.Errorf("%w: encode patch: %v", ErrCannotInject, err))
	}
	pt := admissionv1.PatchTypeJSONPatch
	in.log.Info("ward agent injected", "namespace", req.Namespace, "pod", podName(&pod, req), "operations", len(patch))
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: raw, PatchType: &pt}
}

// fail denies the request, or allows it unmodified with a warning when the
// injector fails open.
func (in *Injector) fail(req *admissionv1.AdmissionRequest, err error) *admissionv1.AdmissionResponse {
	in.log.Warn("pod not injected", "namespace", req.Namespace, "name", req.Name, "fail_open", in.cfg.FailOpen, "error", err)
	if in.cfg.FailOpen {
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"ward agent not injected: " + err.Error()}}
	}
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Code: 400, Reason: metav1.StatusReasonBadRequest, Message: err.Error()}}
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// podName returns the pod's name, or its generateName prefix before the API
// server has assigned one.
func podName(pod *corev1.Pod, req *admissionv1.AdmissionRequest) string {
	switch {
	case pod.Name != "":
		return pod.Name
	case req.Name != "":
		return req.Name
	default:
		return pod.GenerateName + "*"
	}
}
