package iamproof

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Template is a CloudFormation / SAM template as plain JSON values, with
// the YAML short forms of intrinsic functions (!Ref, !Sub, …) turned into
// their long forms ({"Ref": …}, {"Fn::Sub": …}).
type Template map[string]any

// ParseTemplate reads a YAML (or JSON) template.
func ParseTemplate(data []byte) (Template, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return nil, err
	}
	v, err := longForm(&n)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a template is a mapping, got %T", v)
	}
	return m, nil
}

func longForm(n *yaml.Node) (any, error) {
	if n.Kind == yaml.DocumentNode {
		return longForm(n.Content[0])
	}
	if n.Kind == yaml.AliasNode {
		return longForm(n.Alias)
	}
	var v any
	switch n.Kind {
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			x, err := longForm(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[n.Content[i].Value] = x
		}
		v = m
	case yaml.SequenceNode:
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			x, err := longForm(c)
			if err != nil {
				return nil, err
			}
			l = append(l, x)
		}
		v = l
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!int", "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil {
				return nil, err
			}
			v = f
		case "!!bool":
			v = n.Value == "true"
		case "!!null":
			v = nil
		default:
			v = n.Value
		}
	}
	if !strings.HasPrefix(n.Tag, "!") || strings.HasPrefix(n.Tag, "!!") {
		return v, nil
	}
	name := strings.TrimPrefix(n.Tag, "!")
	switch name {
	case "Ref", "Condition":
		return map[string]any{name: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			res, attr, _ := strings.Cut(s, ".")
			return map[string]any{"Fn::GetAtt": []any{res, attr}}, nil
		}
	}
	return map[string]any{"Fn::" + name: v}, nil
}

// Scope is what a template's intrinsic functions resolve against: the
// parameters, the pseudo parameters and the resources as deployed.
type Scope struct {
	Account   Account
	StackName string
	StackID   string
	Params    map[string]string
	// Refs and Attrs are the resources' Ref values and attributes
	// (Attrs["Table"]["Arn"]).
	Refs  map[string]string
	Attrs map[string]map[string]string
	// Conditions are the template's Conditions section.
	Conditions map[string]any
	// vars are extra names for Ref and ${} (a SAM policy template's
	// parameters, the variables of one Fn::Sub).
	vars map[string]any
}

func (s *Scope) with(vars map[string]any) *Scope {
	c := *s
	c.vars = map[string]any{}
	for k, v := range s.vars {
		c.vars[k] = v
	}
	for k, v := range vars {
		c.vars[k] = v
	}
	return &c
}

func (s *Scope) ref(name string) (any, error) {
	if v, ok := s.vars[name]; ok {
		return v, nil
	}
	switch name {
	case "AWS::AccountId":
		return s.Account.ID, nil
	case "AWS::Region":
		return s.Account.Region, nil
	case "AWS::Partition":
		return s.Account.Partition, nil
	case "AWS::URLSuffix":
		return "amazonaws.com", nil
	case "AWS::StackName":
		return s.StackName, nil
	case "AWS::StackId":
		return s.StackID, nil
	case "AWS::NoValue":
		return nil, nil
	}
	if v, ok := s.Params[name]; ok {
		return v, nil
	}
	if v, ok := s.Refs[name]; ok {
		return v, nil
	}
	return nil, fmt.Errorf("Ref %s: no such parameter or resource in the proof's stack", name)
}

func (s *Scope) getAtt(res, attr string) (string, error) {
	if v, ok := s.Attrs[res][attr]; ok {
		return v, nil
	}
	return "", fmt.Errorf("GetAtt %s.%s: not known to the proof's stack", res, attr)
}

func splitAny(s string) []any {
	var out []any
	for _, p := range strings.Split(s, ",") {
		out = append(out, p)
	}
	return out
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// Resolve evaluates the intrinsic functions in v.
func (s *Scope) Resolve(v any) (any, error) {
	switch v := v.(type) {
	case []any:
		out := make([]any, 0, len(v))
		for _, x := range v {
			r, err := s.Resolve(x)
			if err != nil {
				return nil, err
			}
			if r != nil || x == nil {
				out = append(out, r)
			}
		}
		return out, nil
	case map[string]any:
		if len(v) == 1 {
			for k, arg := range v {
				if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
					return s.intrinsic(k, arg)
				}
			}
		}
		out := map[string]any{}
		for k, x := range v {
			r, err := s.Resolve(x)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			if r != nil || x == nil {
				out[k] = r
			}
		}
		return out, nil
	}
	return v, nil
}

func (s *Scope) resolveString(v any) (string, error) {
	r, err := s.Resolve(v)
	if err != nil {
		return "", err
	}
	switch r := r.(type) {
	case string:
		return r, nil
	case float64:
		return strconv.FormatFloat(r, 'f', -1, 64), nil
	}
	return "", fmt.Errorf("want a string, got %T %v", r, r)
}

func (s *Scope) intrinsic(name string, arg any) (any, error) {
	args, _ := arg.([]any)
	switch name {
	case "Ref":
		return s.ref(fmt.Sprint(arg))
	case "Fn::GetAtt":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::GetAtt %v: want [resource, attribute]", arg)
		}
		return s.getAtt(fmt.Sprint(args[0]), fmt.Sprint(args[1]))
	case "Fn::Sub":
		text, vars := arg, map[string]any{}
		if len(args) == 2 {
			text = args[0]
			m, _ := args[1].(map[string]any)
			for k, x := range m {
				r, err := s.Resolve(x)
				if err != nil {
					return nil, fmt.Errorf("Fn::Sub variable %s: %w", k, err)
				}
				vars[k] = r
			}
		}
		str, ok := text.(string)
		if !ok {
			return nil, fmt.Errorf("Fn::Sub %v: want a string", arg)
		}
		inner := s.with(vars)
		var firstErr error
		out := subVar.ReplaceAllStringFunc(str, func(m string) string {
			name := m[2 : len(m)-1]
			if strings.HasPrefix(name, "!") {
				return "${" + name[1:] + "}"
			}
			var v any
			var err error
			if _, isVar := inner.vars[name]; !isVar && strings.Contains(name, ".") && !strings.HasPrefix(name, "AWS::") {
				res, attr, _ := strings.Cut(name, ".")
				v, err = inner.getAtt(res, attr)
			} else {
				v, err = inner.ref(name)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			return fmt.Sprint(v)
		})
		return out, firstErr
	case "Fn::Join":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Join %v: want [delimiter, list]", arg)
		}
		l, err := s.Resolve(args[1])
		if err != nil {
			return nil, err
		}
		if str, ok := l.(string); ok {
			// A Ref to a CommaDelimitedList parameter: the scope keeps its
			// value as the operator writes it.
			l = splitAny(str)
		}
		list, ok := l.([]any)
		if !ok {
			return nil, fmt.Errorf("Fn::Join %v: want a list, got %T", arg, l)
		}
		var parts []string
		for _, x := range list {
			parts = append(parts, fmt.Sprint(x))
		}
		return strings.Join(parts, fmt.Sprint(args[0])), nil
	case "Fn::Split":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Split %v: want [delimiter, string]", arg)
		}
		str, err := s.resolveString(args[1])
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(str, fmt.Sprint(args[0])) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Select":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Select %v: want [index, list]", arg)
		}
		idx, err := s.resolveString(args[0])
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(idx)
		if err != nil {
			return nil, fmt.Errorf("Fn::Select index %q: %w", idx, err)
		}
		l, err := s.Resolve(args[1])
		if err != nil {
			return nil, err
		}
		list, _ := l.([]any)
		if i < 0 || i >= len(list) {
			return nil, fmt.Errorf("Fn::Select index %d out of %d", i, len(list))
		}
		return list[i], nil
	case "Fn::If":
		if len(args) != 3 {
			return nil, fmt.Errorf("Fn::If %v: want [condition, then, else]", arg)
		}
		ok, err := s.condition(fmt.Sprint(args[0]))
		if err != nil {
			return nil, err
		}
		if ok {
			return s.Resolve(args[1])
		}
		return s.Resolve(args[2])
	case "Condition":
		return s.condition(fmt.Sprint(arg))
	case "Fn::Equals":
		if len(args) != 2 {
			return nil, fmt.Errorf("Fn::Equals %v: want two values", arg)
		}
		a, err := s.Resolve(args[0])
		if err != nil {
			return nil, err
		}
		b, err := s.Resolve(args[1])
		if err != nil {
			return nil, err
		}
		return fmt.Sprint(a) == fmt.Sprint(b), nil
	case "Fn::Not", "Fn::And", "Fn::Or":
		var vals []bool
		for _, x := range args {
			r, err := s.Resolve(x)
			if err != nil {
				return nil, err
			}
			b, ok := r.(bool)
			if !ok {
				return nil, fmt.Errorf("%s: %v is not a condition", name, x)
			}
			vals = append(vals, b)
		}
		switch name {
		case "Fn::Not":
			return len(vals) == 1 && !vals[0], nil
		case "Fn::And":
			for _, b := range vals {
				if !b {
					return false, nil
				}
			}
			return true, nil
		default:
			for _, b := range vals {
				if b {
					return true, nil
				}
			}
			return false, nil
		}
	}
	return nil, fmt.Errorf("%s is not implemented by the proof's resolver", name)
}

func (s *Scope) condition(name string) (bool, error) {
	c, ok := s.Conditions[name]
	if !ok {
		return false, fmt.Errorf("no condition %s", name)
	}
	r, err := s.Resolve(c)
	if err != nil {
		return false, fmt.Errorf("condition %s: %w", name, err)
	}
	b, ok := r.(bool)
	if !ok {
		return false, fmt.Errorf("condition %s is not a boolean", name)
	}
	return b, nil
}

// samPolicyTemplates is aws-sam-translator 1.110.0's
// samtranslator/policy_templates_data/policy_templates.json, verbatim
// (Apache License 2.0, © Amazon.com, Inc. or its affiliates): the
// definitions SAM expands a function's policy templates from.
//
//go:embed sam_policy_templates.json
var samPolicyTemplates []byte

type samTemplate struct {
	Definition map[string]any
	Parameters map[string]any
}

func policyTemplates() (map[string]samTemplate, error) {
	var doc struct{ Templates map[string]samTemplate }
	if err := json.Unmarshal(samPolicyTemplates, &doc); err != nil {
		return nil, fmt.Errorf("SAM policy templates: %w", err)
	}
	return doc.Templates, nil
}

// FunctionPolicies returns the identity-based policies a function's
// Policies property gives its role, resolved: inline documents as written,
// SAM policy templates (DynamoDBCrudPolicy: {TableName: …} and the like)
// expanded as SAM expands them. A managed policy (a name or an ARN) is an
// error: its document is not in the template.
//
// SAM also attaches policies of its own that no function code uses, so
// they are left out: AWSLambdaBasicExecutionRole (logs), the X-Ray write
// policy (Tracing: Active), AWSLambdaSQSQueueExecutionRole for an SQS
// event source (the Lambda service polls with it) and sqs:SendMessage to a
// function's DeadLetterQueue (the Lambda service sends with it).
func FunctionPolicies(tmpl Template, logicalID string, s *Scope) ([]NamedPolicy, error) {
	res, _ := tmpl["Resources"].(map[string]any)
	fn, _ := res[logicalID].(map[string]any)
	if fn == nil {
		return nil, fmt.Errorf("template has no resource %s", logicalID)
	}
	props, _ := fn["Properties"].(map[string]any)
	var entries []any
	switch p := props["Policies"].(type) {
	case nil:
		return nil, nil
	case []any:
		entries = p
	default:
		entries = []any{p}
	}
	var templates map[string]samTemplate
	var out []NamedPolicy
	for i, e := range entries {
		name := fmt.Sprintf("%sPolicy%d", logicalID, i)
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s Policies[%d] = %v: managed policies are not expanded by the proof (their documents are not in the template); write the statements inline", logicalID, i, e)
		}
		if _, inline := m["Statement"]; inline {
			p, err := toPolicy(s, m)
			if err != nil {
				return nil, fmt.Errorf("%s Policies[%d]: %w", logicalID, i, err)
			}
			out = append(out, NamedPolicy{Name: name, Policy: p})
			continue
		}
		if len(m) != 1 {
			return nil, fmt.Errorf("%s Policies[%d] is neither a policy document nor one SAM policy template", logicalID, i)
		}
		if templates == nil {
			var err error
			if templates, err = policyTemplates(); err != nil {
				return nil, err
			}
		}
		for tname, params := range m {
			t, ok := templates[tname]
			if !ok {
				return nil, fmt.Errorf("%s Policies[%d]: %s is not a SAM policy template", logicalID, i, tname)
			}
			vars := map[string]any{}
			given, _ := params.(map[string]any)
			for pname := range t.Parameters {
				v, ok := given[pname]
				if !ok {
					return nil, fmt.Errorf("%s Policies[%d]: %s needs the parameter %s", logicalID, i, tname, pname)
				}
				r, err := s.Resolve(v)
				if err != nil {
					return nil, fmt.Errorf("%s Policies[%d] %s.%s: %w", logicalID, i, tname, pname, err)
				}
				vars[pname] = r
			}
			for pname := range given {
				if _, ok := t.Parameters[pname]; !ok {
					return nil, fmt.Errorf("%s Policies[%d]: %s has no parameter %s", logicalID, i, tname, pname)
				}
			}
			p, err := toPolicy(s.with(vars), t.Definition)
			if err != nil {
				return nil, fmt.Errorf("%s Policies[%d] %s: %w", logicalID, i, tname, err)
			}
			out = append(out, NamedPolicy{Name: name + "-" + tname, Policy: p})
		}
	}
	return out, nil
}

func toPolicy(s *Scope, doc map[string]any) (Policy, error) {
	r, err := s.Resolve(doc)
	if err != nil {
		return Policy{}, err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return Policy{}, err
	}
	var p Policy
	if err := json.Unmarshal(b, &p); err != nil {
		return Policy{}, err
	}
	if p.Version == "" {
		p.Version = "2012-10-17"
	}
	return p, nil
}

// Environment returns a function's environment variables, resolved.
func Environment(tmpl Template, logicalID string, s *Scope) (map[string]string, error) {
	res, _ := tmpl["Resources"].(map[string]any)
	props, _ := dig(res[logicalID], "Properties", "Environment", "Variables").(map[string]any)
	out := map[string]string{}
	for _, k := range sortedKeys(props) {
		v, err := s.resolveString(props[k])
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", logicalID, k, err)
		}
		out[k] = v
	}
	return out, nil
}

// Functions returns the logical ids of the template's functions.
func Functions(tmpl Template) []string {
	res, _ := tmpl["Resources"].(map[string]any)
	var out []string
	for _, id := range sortedKeys(res) {
		if dig(res[id], "Type") == "AWS::Serverless::Function" {
			out = append(out, id)
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dig walks plain JSON by keys.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Dig walks plain JSON by keys.
func Dig(v any, keys ...string) any { return dig(v, keys...) }

// JSON is a policy as the IAM API takes it.
func (p Policy) JSON() string {
	b, _ := json.Marshal(p)
	return string(b)
}
