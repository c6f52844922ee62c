package main

import (
	"fmt"
	"go/ast"
	"strings"
	"unicode"
)

// actionDirective is the doc comment line that names a method's action
// whatever the naming rule: "//shmex:action mean".
const actionDirective = "//shmex:action "

// actionName returns the action name of the method mname: the one its doc
// comment gives with actionDirective, or the one naming makes.
func actionName(mname string, doc *ast.CommentGroup, naming Naming) (string, error) {
	if doc != nil {
		for _, c := range doc.List {
			if !strings.HasPrefix(c.Text, actionDirective) {
				continue
			}
			name := strings.TrimSpace(strings.TrimPrefix(c.Text, actionDirective))
			if name == "" || strings.ContainsFunc(name, unicode.IsSpace) {
				return "", fmt.Errorf("%q: want one action name after %s", c.Text, strings.TrimSpace(actionDirective))
			}
			return name, nil
		}
	}
	switch naming {
	case NamingGo:
		return mname, nil
	case NamingCamel:
		r := []rune(snake(mname))
		var b strings.Builder
		up := false
		for _, c := range r {
			if c == '_' {
				up = true
				continue
			}
			if up {
				c = unicode.ToUpper(c)
			}
			up = false
			b.WriteRune(c)
		}
		return b.String(), nil
	}
	return snake(mname), nil
}

// snake returns the snake_case form of the Go name s: GetValue is
// get_value, HTTPServer http_server, ID id, Add2 add2.
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) {
			prevLower := i > 0 && (unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1]))
			acronymEnd := i > 0 && unicode.IsUpper(r[i-1]) && i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || acronymEnd {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}
