package authz

// Finding is one problem Lint found.
type Finding struct {
	Source  string // "file:line", or the file alone for whole-file problems
	Message string
}

// Lint checks the model and policy files and returns what it finds, in file
// order; an empty result means the files are clean.
func Lint(modelPath, policyPath string) []Finding {
	var findings []Finding

	modelData, err := readBounded(modelPath, maxModelBytes)
	if err != nil {
		findings = append(findings, Finding{Source: modelPath, Message: err.Error()})
	} else if _, err := parseModel(modelPath, modelData); err != nil {
		findings = append(findings, Finding{Source: modelPath, Message: err.Error()})
	}

	policyData, err := readBounded(policyPath, maxPolicyBytes)
	if err != nil {
		return append(findings, Finding{Source: policyPath, Message: err.Error()})
	}

	_, problems := parsePolicy(policyPath, policyData)
	for _, p := range problems {
		findings = append(findings, Finding{Source: p.source(), Message: p.msg})
	}
	return findings
}
