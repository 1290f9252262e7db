package dynamotest

import (
	"fmt"
	"math/big"
	"reflect"
	"strings"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The expressions this DB understands: what the store writes, by hand or
// through feature/dynamodb/expression:
//
//	cond     := or
//	or       := and { OR and }
//	and      := unary { AND unary }
//	unary    := NOT unary | primary
//	primary  := ( cond ) | func ( operand {, operand} ) | operand cmp operand
//	          | operand BETWEEN operand AND operand
//	func     := attribute_exists | attribute_not_exists | begins_with
//	cmp      := = | <> | < | <= | > | >=
//	operand  := #name | :value | a top-level attribute name
//
// Anything else (nested paths, size, contains, IN, attribute_type) is
// refused with an error naming it, never guessed at.

// node is a parsed expression.
type node interface{}

type (
	andNode  struct{ l, r node }
	orNode   struct{ l, r node }
	notNode  struct{ x node }
	funcNode struct {
		name string
		args []operand
	}
	cmpNode struct {
		op   string
		l, r operand
	}
	betweenNode struct{ x, lo, hi operand }
)

// operand is an attribute (by name) or a value.
type operand struct {
	attr  string
	value types.AttributeValue
}

type parser struct {
	toks   []string
	pos    int
	names  map[string]string
	values map[string]types.AttributeValue
	used   map[string]bool // placeholders the expression used
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case unicode.IsSpace(c):
			i++
		case strings.ContainsRune("(),", c):
			toks = append(toks, string(c))
			i++
		case strings.ContainsRune("=<>", c):
			j := i + 1
			if j < len(s) && (s[j] == '=' || s[i] == '<' && s[j] == '>') {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		case c == '#' || c == ':' || c == '_' || unicode.IsLetter(c) || unicode.IsDigit(c):
			j := i + 1
			for j < len(s) && (s[j] == '_' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("dynamotest: expression %q: %q is not supported", s, string(c))
		}
	}
	return toks, nil
}

// parseCondition parses a condition or key condition expression.
func parseCondition(expr string, names map[string]string, values map[string]types.AttributeValue) (node, map[string]bool, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, nil, err
	}
	p := &parser{toks: toks, names: names, values: values, used: map[string]bool{}}
	n, err := p.or()
	if err != nil {
		return nil, nil, fmt.Errorf("dynamotest: expression %q: %w", expr, err)
	}
	if p.pos != len(p.toks) {
		return nil, nil, fmt.Errorf("dynamotest: expression %q: unexpected %q", expr, p.toks[p.pos])
	}
	return n, p.used, nil
}

func (p *parser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *parser) expect(t string) error {
	if got := p.next(); got != t {
		return fmt.Errorf("want %q, got %q", t, got)
	}
	return nil
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "OR") {
		p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orNode{l, r}
	}
	return l, nil
}

func (p *parser) and() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for strings.EqualFold(p.peek(), "AND") {
		p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = andNode{l, r}
	}
	return l, nil
}

func (p *parser) unary() (node, error) {
	if strings.EqualFold(p.peek(), "NOT") {
		p.next()
		x, err := p.unary()
		return notNode{x}, err
	}
	return p.primary()
}

func (p *parser) primary() (node, error) {
	if p.peek() == "(" {
		p.next()
		n, err := p.or()
		if err != nil {
			return nil, err
		}
		return n, p.expect(")")
	}
	t := p.peek()
	if p.pos+1 < len(p.toks) && p.toks[p.pos+1] == "(" && !strings.HasPrefix(t, "#") && !strings.HasPrefix(t, ":") {
		switch t {
		case "attribute_exists", "attribute_not_exists", "begins_with":
		default:
			return nil, fmt.Errorf("function %s is not supported", t)
		}
		p.next()
		p.next()
		var args []operand
		for {
			a, err := p.operand()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.peek() == "," {
				p.next()
				continue
			}
			break
		}
		if err := p.expect(")"); err != nil {
			return nil, err
		}
		want := 1
		if t == "begins_with" {
			want = 2
		}
		if len(args) != want || args[0].attr == "" {
			return nil, fmt.Errorf("%s takes an attribute and %d argument(s)", t, want-1)
		}
		return funcNode{t, args}, nil
	}
	l, err := p.operand()
	if err != nil {
		return nil, err
	}
	op := p.next()
	if strings.EqualFold(op, "BETWEEN") {
		lo, err := p.operand()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(p.next(), "AND") {
			return nil, fmt.Errorf("BETWEEN needs AND")
		}
		hi, err := p.operand()
		return betweenNode{l, lo, hi}, err
	}
	switch op {
	case "=", "<>", "<", "<=", ">", ">=":
	default:
		return nil, fmt.Errorf("operator %q is not supported", op)
	}
	r, err := p.operand()
	return cmpNode{op, l, r}, err
}

func (p *parser) operand() (operand, error) {
	t := p.next()
	switch {
	case strings.HasPrefix(t, "#"):
		name, ok := p.names[t]
		if !ok {
			return operand{}, fmt.Errorf("name placeholder %s is not defined", t)
		}
		p.used[t] = true
		return operand{attr: name}, nil
	case strings.HasPrefix(t, ":"):
		v, ok := p.values[t]
		if !ok {
			return operand{}, fmt.Errorf("value placeholder %s is not defined", t)
		}
		p.used[t] = true
		return operand{value: v}, nil
	case t == "" || t == "(" || t == ")" || t == ",":
		return operand{}, fmt.Errorf("want an operand, got %q", t)
	}
	if p.peek() == "." || p.peek() == "[" {
		return operand{}, fmt.Errorf("nested attribute paths are not supported")
	}
	return operand{attr: t}, nil
}

// eval evaluates n on item (nil: no item).
func eval(n node, item map[string]types.AttributeValue) (bool, error) {
	get := func(o operand) types.AttributeValue {
		if o.attr != "" {
			return item[o.attr]
		}
		return o.value
	}
	switch n := n.(type) {
	case andNode:
		l, err := eval(n.l, item)
		if err != nil || !l {
			return false, err
		}
		return eval(n.r, item)
	case orNode:
		l, err := eval(n.l, item)
		if err != nil || l {
			return l, err
		}
		return eval(n.r, item)
	case notNode:
		x, err := eval(n.x, item)
		return !x, err
	case funcNode:
		v := get(n.args[0])
		switch n.name {
		case "attribute_exists":
			return v != nil, nil
		case "attribute_not_exists":
			return v == nil, nil
		default: // begins_with
			prefix := get(n.args[1])
			switch v := v.(type) {
			case *types.AttributeValueMemberS:
				p, ok := prefix.(*types.AttributeValueMemberS)
				return ok && strings.HasPrefix(v.Value, p.Value), nil
			case *types.AttributeValueMemberB:
				p, ok := prefix.(*types.AttributeValueMemberB)
				return ok && strings.HasPrefix(string(v.Value), string(p.Value)), nil
			}
			return false, nil
		}
	case cmpNode:
		l, r := get(n.l), get(n.r)
		if l == nil || r == nil {
			return n.op == "<>" && (l == nil) != (r == nil), nil
		}
		if n.op == "=" || n.op == "<>" {
			eq := reflect.DeepEqual(l, r)
			if ln, ok := l.(*types.AttributeValueMemberN); ok {
				if rn, ok := r.(*types.AttributeValueMemberN); ok {
					c, err := compareNumbers(ln.Value, rn.Value)
					if err != nil {
						return false, err
					}
					eq = c == 0
				}
			}
			return eq == (n.op == "="), nil
		}
		c, ok, err := compare(l, r)
		if err != nil || !ok {
			return false, err
		}
		switch n.op {
		case "<":
			return c < 0, nil
		case "<=":
			return c <= 0, nil
		case ">":
			return c > 0, nil
		default:
			return c >= 0, nil
		}
	case betweenNode:
		x, lo, hi := get(n.x), get(n.lo), get(n.hi)
		if x == nil || lo == nil || hi == nil {
			return false, nil
		}
		a, ok1, err := compare(x, lo)
		if err != nil {
			return false, err
		}
		b, ok2, err := compare(x, hi)
		return ok1 && ok2 && a >= 0 && b <= 0, err
	}
	return false, fmt.Errorf("dynamotest: unknown expression node %T", n)
}

// compare orders two scalars of one type; ok is false for values of
// different types (the comparison is then false, as DynamoDB makes it).
func compare(a, b types.AttributeValue) (c int, ok bool, err error) {
	switch a := a.(type) {
	case *types.AttributeValueMemberS:
		b, ok := b.(*types.AttributeValueMemberS)
		if !ok {
			return 0, false, nil
		}
		return strings.Compare(a.Value, b.Value), true, nil
	case *types.AttributeValueMemberB:
		b, ok := b.(*types.AttributeValueMemberB)
		if !ok {
			return 0, false, nil
		}
		return strings.Compare(string(a.Value), string(b.Value)), true, nil
	case *types.AttributeValueMemberN:
		b, ok := b.(*types.AttributeValueMemberN)
		if !ok {
			return 0, false, nil
		}
		c, err := compareNumbers(a.Value, b.Value)
		return c, err == nil, err
	}
	return 0, false, fmt.Errorf("dynamotest: ordering %T values is not supported", a)
}

func compareNumbers(a, b string) (int, error) {
	x, ok1 := new(big.Float).SetString(a)
	y, ok2 := new(big.Float).SetString(b)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("dynamotest: bad number %q or %q", a, b)
	}
	return x.Cmp(y), nil
}

// keyCondition is a Query's key condition: equality on the hash key and at
// most one condition on the range key.
type keyCondition struct {
	hash      types.AttributeValue
	rangeCond node // nil: every range key
}

// splitKeyCondition checks that n is a key condition on hashAttr and
// rangeAttr and splits it.
func splitKeyCondition(n node, hashAttr, rangeAttr string) (keyCondition, error) {
	var parts []node
	var flatten func(node) error
	flatten = func(n node) error {
		switch n := n.(type) {
		case andNode:
			if err := flatten(n.l); err != nil {
				return err
			}
			return flatten(n.r)
		case cmpNode, betweenNode, funcNode:
			parts = append(parts, n)
			return nil
		}
		return fmt.Errorf("dynamotest: a key condition is conditions joined by AND, got %T", n)
	}
	if err := flatten(n); err != nil {
		return keyCondition{}, err
	}
	var kc keyCondition
	for _, part := range parts {
		switch p := part.(type) {
		case cmpNode:
			if p.l.attr == "" || p.r.value == nil || p.op == "<>" {
				return keyCondition{}, fmt.Errorf("dynamotest: key condition %s must be attribute %s value", p.op, p.op)
			}
			switch {
			case p.l.attr == hashAttr && p.op == "=" && kc.hash == nil:
				kc.hash = p.r.value
				continue
			case p.l.attr == rangeAttr && rangeAttr != "" && kc.rangeCond == nil:
				kc.rangeCond = p
				continue
			}
		case betweenNode:
			if p.x.attr == rangeAttr && rangeAttr != "" && kc.rangeCond == nil {
				kc.rangeCond = p
				continue
			}
		case funcNode:
			if p.name == "begins_with" && p.args[0].attr == rangeAttr && rangeAttr != "" && kc.rangeCond == nil {
				kc.rangeCond = p
				continue
			}
		}
		return keyCondition{}, fmt.Errorf("dynamotest: key condition part %+v is not on the key (%s, %s) in a form Query takes", part, hashAttr, rangeAttr)
	}
	if kc.hash == nil {
		return keyCondition{}, fmt.Errorf("dynamotest: key condition has no equality on %s", hashAttr)
	}
	return kc, nil
}
