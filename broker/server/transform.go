package server

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"strings"

	"ward.dev/ward/crypto/keyset"
	"ward.dev/ward/masking/rules"
	"ward.dev/ward/masking/transform"
)

// openMasking loads the masking key, sealed by the keyset, creating it on a
// first start, and the rules file when one is configured.
func (s *Server) openMasking(ks *keyset.Keyset) error {
	path := s.cfg.Masking.KeyFile
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := transform.SealKeyFile(path, ks, rand.Reader); err != nil {
			return fmt.Errorf("create masking key: %w", err)
		}
	}
	keys, err := transform.LoadKeyFile(path, ks)
	if err != nil {
		return err
	}
	s.maskKeys = keys
	if s.cfg.Masking.Rules != "" {
		if s.maskRules, err = rules.Load(s.cfg.Masking.Rules); err != nil {
			return err
		}
	}
	return nil
}

type transformRequest struct {
	Rule   string    `json:"rule"`
	Values []*string `json:"values"` // pointers, so a JSON null is rejected rather than read as ""
}

// tokenizer returns the tokenizer for rule and its policy object. A rule is
// a schema.table.column whose masking rule uses tokenize (its parameters
// apply, so tokens match those ward mask wrote), or a bare domain name when
// no rules file is configured.
func (s *Server) tokenizer(rule string) (*transform.Tokenizer, string, *apiError) {
	if rule == "" {
		return nil, "", errorf(http.StatusBadRequest, "missing rule")
	}
	params := map[string]string{"domain": rule}
	object := "tokens/" + rule
	if s.maskRules != nil {
		col, err := rules.ParseColumn(rule)
		if err != nil {
			return nil, "", errorf(http.StatusBadRequest, "invalid rule %s: %v", quote(rule), err)
		}
		params = nil
		for _, r := range s.maskRules.Rules {
			if r.Column == col && r.JSONPath == "" && !r.Elements {
				if r.Transformer != "tokenize" {
					return nil, "", errorf(http.StatusBadRequest, "%s uses %s, not tokenize", col, r.Transformer)
				}
				params = maps.Clone(r.Params)
			}
		}
		if params == nil {
			return nil, "", errorf(http.StatusNotFound, "no masking rule for %s", col)
		}
		object = col.Object()
	} else if strings.ContainsAny(rule, "/*") {
		return nil, "", errorf(http.StatusBadRequest, "invalid rule %s: a domain name must not contain / or *", quote(rule))
	}
	tok, err := transform.NewTokenizer(s.maskKeys, params)
	if err != nil {
		return nil, "", errorf(http.StatusBadRequest, "rule %s: %v", quote(rule), err)
	}
	return tok, object, nil
}

func (s *Server) handleTransform(reverse bool) handler {
	action := "tokenize"
	if reverse {
		action = "detokenize"
	}
	return func(req *request) (any, *apiError) {
		var body transformRequest
		if err := decode(req.r, &body); err != nil {
			return nil, err
		}
		req.rec.Object = "tokens/" + body.Rule
		if len(body.Values) == 0 || len(body.Values) > transform.MaxBatch {
			return nil, errorf(http.StatusBadRequest, "values must hold 1 to %d items", transform.MaxBatch)
		}
		// Authorize before looking the rule up, so a caller without the
		// permission cannot learn which rules exist.
		object := "tokens/" + body.Rule
		if s.maskRules != nil {
			object = "column/" + body.Rule
		}
		req.rec.Object = object
		if err := s.require(req, object, action); err != nil {
			return nil, err
		}
		tok, _, aerr := s.tokenizer(body.Rule)
		if aerr != nil {
			return nil, aerr
		}

		values := make([]string, len(body.Values))
		for i, v := range body.Values {
			if v == nil {
				return nil, errorf(http.StatusBadRequest, "values[%d] is null; send strings only", i)
			}
			values[i] = *v
		}
		var (
			out []string
			err error
		)
		if reverse {
			out, err = tok.DetokenizeBatch(values)
		} else {
			out, err = tok.TokenizeBatch(values)
		}
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "%s: %v", action, err)
		}
		if reverse {
			return map[string]any{"values": out}, nil
		}
		return map[string]any{"tokens": out}, nil
	}
}
