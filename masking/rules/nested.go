package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"ward.dev/ward/masking/transform"
)

var errNotJSON = errors.New("value is not valid JSON")

// maskJSON applies t to the values at path inside the JSON document doc.
// A missing key is left alone, since documents of one column differ in
// shape. Strings and numbers are masked; a masked number stays a number
// when its masked text still parses as one.
//
// NOTE: the document is re-encoded, so object keys come out sorted and
// insignificant whitespace is dropped. jsonb stores neither, but a json
// column loses its original key order.
func maskJSON(doc, path string, t transform.Transformer, entity string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", errNotJSON
	}
	v, err := walkJSON(v, strings.Split(path, "."), t, entity)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func walkJSON(v any, path []string, t transform.Transformer, entity string) (any, error) {
	if len(path) == 0 {
		return maskLeaf(v, t, entity)
	}
	key, each := strings.CutSuffix(path[0], "[]")
	obj, ok := v.(map[string]any)
	if !ok {
		return v, nil
	}
	child, ok := obj[key]
	if !ok {
		return v, nil
	}
	if !each {
		masked, err := walkJSON(child, path[1:], t, entity)
		obj[key] = masked
		return v, err
	}
	arr, ok := child.([]any)
	if !ok {
		return v, nil
	}
	for i := range arr {
		masked, err := walkJSON(arr[i], path[1:], t, entity)
		if err != nil {
			return v, err
		}
		arr[i] = masked
	}
	return v, nil
}

func maskLeaf(v any, t transform.Transformer, entity string) (any, error) {
	if t.Info().Null {
		return nil, nil
	}
	switch x := v.(type) {
	case string:
		return t.Transform(x, entity)
	case json.Number:
		out, err := t.Transform(x.String(), entity)
		if err != nil {
			return nil, err
		}
		if json.Valid([]byte(out)) {
			return json.Number(out), nil
		}
		return out, nil
	case nil:
		return nil, nil
	default:
		return nil, fmt.Errorf("JSON value at path is an object, array or boolean, not a string or number")
	}
}

var errArray = errors.New("value is not a one-dimensional array literal")

// maskArray applies t to each non-NULL element of a one-dimensional
// PostgreSQL array literal such as {a,"b c",NULL}.
func maskArray(lit string, t transform.Transformer, entity string) (string, error) {
	elems, err := parseArray(lit)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		if e == nil || t.Info().Null {
			b.WriteString("NULL")
			continue
		}
		out, err := t.Transform(*e, entity)
		if err != nil {
			return "", err
		}
		writeArrayElem(&b, out)
	}
	b.WriteByte('}')
	return b.String(), nil
}

func parseArray(lit string) ([]*string, error) {
	if len(lit) < 2 || lit[0] != '{' || lit[len(lit)-1] != '}' {
		return nil, errArray
	}
	body := lit[1 : len(lit)-1]
	var out []*string
	if body == "" {
		return out, nil
	}
	for i := 0; i <= len(body); {
		var cur strings.Builder
		quoted := false
		if i < len(body) && body[i] == '"' {
			quoted = true
			i++
			for ; i < len(body) && body[i] != '"'; i++ {
				if body[i] == '\\' && i+1 < len(body) {
					i++
				}
				cur.WriteByte(body[i])
			}
			if i >= len(body) {
				return nil, errArray
			}
			i++
		} else {
			for ; i < len(body) && body[i] != ','; i++ {
				if body[i] == '{' || body[i] == '"' {
					return nil, errArray
				}
				cur.WriteByte(body[i])
			}
		}
		s := cur.String()
		if !quoted && strings.EqualFold(s, "NULL") {
			out = append(out, nil)
		} else {
			out = append(out, &s)
		}
		if i < len(body) && body[i] != ',' {
			return nil, errArray
		}
		i++
	}
	return out, nil
}

func writeArrayElem(b *strings.Builder, s string) {
	if s != "" && !strings.ContainsAny(s, "{},\"\\ \t\n") && !strings.EqualFold(s, "NULL") {
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for _, r := range s {
		if r == '"' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
}
