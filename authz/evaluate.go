package authz

import (
	"errors"
	"fmt"
	"sync"

	"github.com/casbin/casbin/v2/effector"
	"github.com/casbin/casbin/v2/model"
	"github.com/casbin/casbin/v2/rbac"
	"github.com/casbin/govaluate"
)

// lineEvaluator decides a request over a few selected policy lines with
// Casbin's own parts: the matcher as Casbin parsed it, compiled by govaluate
// with Casbin's function map, g computed by Casbin's role manager, and the
// effect merged by Casbin's DefaultEffector. It repeats the loop of
// Casbin's Enforcer.enforce (v2.135.0) without the per-call setup that
// dominates when only a few lines are evaluated: copying the function map,
// rebuilding token maps and scanning the matcher for eval() with a regular
// expression. It is safe for concurrent use.
//
// It serves only DefaultModel's matcher, whose request and line tokens are
// fixed by requiredDefinitions and which uses no eval().
type lineEvaluator struct {
	matcher *govaluate.EvaluableExpression
	effect  string // the policy_effect expression, as Casbin stores it
	merger  *effector.DefaultEffector
	work    sync.Pool
}

// evaluation is the per-decision working memory, reused through a pool.
type evaluation struct {
	params  matchParameters
	effects []effector.Effect
	matches []float64
}

func newLineEvaluator(m model.Model, roles rbac.RoleManager) (*lineEvaluator, error) {
	fm := model.LoadFunctionMap()
	functions := fm.GetFunctions()

	// Casbin's g function (util.GenerateGFunction) memoizes results in a map
	// that lives as long as the compiled matcher. This one memoizes in a
	// bounded cache instead, so memory does not grow with every new subject.
	// The role manager does not change within a snapshot, so a memoized
	// result stays true.
	memo := newBoundedCache[roleKey, bool](roleMemoSize)
	functions[ptypeRole] = func(args ...any) (any, error) {
		if len(args) != 3 {
			return false, fmt.Errorf("g takes 3 arguments, got %d", len(args))
		}
		name1, ok1 := args[0].(string)
		name2, ok2 := args[1].(string)
		domain, ok3 := args[2].(string)
		if !ok1 || !ok2 || !ok3 {
			return false, errors.New("g takes string arguments")
		}
		k := roleKey{name1, name2, domain}
		if linked, ok := memo.get(k); ok {
			return linked, nil
		}

		linked, _ := roles.HasLink(name1, name2, domain)
		if len(name1)+len(name2)+len(domain) <= maxRoleMemoBytes {
			memo.put(k, linked)
		}
		return linked, nil
	}

	matcher, err := govaluate.NewEvaluableExpressionWithFunctions(m["m"]["m"].Value, functions)
	if err != nil {
		return nil, err
	}

	ev := &lineEvaluator{
		matcher: matcher,
		effect:  m["e"]["e"].Value,
		merger:  effector.NewDefaultEffector(),
	}
	ev.work.New = func() any { return new(evaluation) }
	return ev, nil
}

// decide evaluates the matcher on lines in order and merges their effects
// as Casbin does. Each line holds its five fields as strings in interfaces
// (see boxLine). It returns whether the request is allowed and the index in
// lines of the line that decided, or -1 when none did.
func (ev *lineEvaluator) decide(sub, dom, obj, act string, lines [][]any) (allowed bool, decided int, err error) {
	// Like Casbin's enforce, turn a panic in a matcher function into an
	// error, so the request is denied and the caller keeps running.
	defer func() {
		if r := recover(); r != nil {
			allowed, decided, err = false, -1, fmt.Errorf("panic in the matcher: %v", r)
		}
	}()

	w := ev.work.Get().(*evaluation)
	defer ev.work.Put(w)

	n := len(lines)
	w.effects = append(w.effects[:0], make([]effector.Effect, n)...)
	w.matches = append(w.matches[:0], make([]float64, n)...)
	w.params.request = [4]any{sub, dom, obj, act}

	effect, explainIndex := effector.Indeterminate, -1
	for i, line := range lines {
		w.params.line = line
		result, err := ev.matcher.Eval(&w.params)
		if err != nil {
			return false, -1, err
		}

		switch result := result.(type) {
		case bool:
			if result {
				w.matches[i] = 1
			}
		case float64:
			if result != 0 {
				w.matches[i] = 1
			}
		default:
			return false, -1, fmt.Errorf("matcher returned %T, want bool or float64", result)
		}

		switch line[4].(string) {
		case effectAllow:
			w.effects[i] = effector.Allow
		case effectDeny:
			w.effects[i] = effector.Deny
		default:
			w.effects[i] = effector.Indeterminate
		}

		effect, explainIndex, err = ev.merger.MergeEffects(ev.effect, w.effects, w.matches, i, n)
		if err != nil {
			return false, -1, err
		}
		if effect != effector.Indeterminate {
			break
		}
	}
	return effect == effector.Allow, explainIndex, nil
}

// matchParameters gives the matcher the request and the line under test,
// named the way Casbin names them (r_sub for r.sub). The values are strings
// already stored in interfaces, so that reading one does not allocate.
type matchParameters struct {
	request [4]any
	line    []any
}

// boxLine returns the fields of a p line as interfaces for matchParameters.
func boxLine(fields []string) []any {
	boxed := make([]any, len(fields))
	for i, f := range fields {
		boxed[i] = f
	}
	return boxed
}

// Get implements govaluate.Parameters.
func (p *matchParameters) Get(name string) (any, error) {
	switch name {
	case "r_sub":
		return p.request[0], nil
	case "r_dom":
		return p.request[1], nil
	case "r_obj":
		return p.request[2], nil
	case "r_act":
		return p.request[3], nil
	case "p_sub":
		return p.line[0], nil
	case "p_dom":
		return p.line[1], nil
	case "p_obj":
		return p.line[2], nil
	case "p_act":
		return p.line[3], nil
	case "p_eft":
		return p.line[4], nil
	}
	return nil, fmt.Errorf("no parameter %q in the ward model", name)
}
