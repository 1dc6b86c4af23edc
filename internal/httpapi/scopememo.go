package httpapi

import (
	"sync"

	"github.com/entrabroker/broker/internal/azure"
)

// scopeMemo remembers successful scope normalizations, so a hot /token
// request does not parse its resource URL again (about 6 % of /token's
// throughput end to end; bench/README.md, "Ablation"). It stops growing at
// maxScopeMemo entries: a caller sending ever new scopes then just pays the
// parse.
type scopeMemo struct {
	mu sync.Mutex
	m  map[scopeMemoKey]string
}

// maxScopeMemo bounds the memo; real deployments use a few scopes.
const maxScopeMemo = 256

type scopeMemoKey struct {
	resource bool // raw is a resource (resource=), not a scope (scope=)
	raw      string
}

// normalize returns azure.ScopeForResource(raw) when resource is true, else
// azure.NormalizeScope(raw), remembering successes.
func (m *scopeMemo) normalize(raw string, resource bool) (string, error) {
	k := scopeMemoKey{resource, raw}
	m.mu.Lock()
	s, ok := m.m[k]
	m.mu.Unlock()
	if ok {
		return s, nil
	}
	var err error
	if resource {
		s, err = azure.ScopeForResource(raw)
	} else {
		s, err = azure.NormalizeScope(raw)
	}
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[scopeMemoKey]string)
	}
	if len(m.m) < maxScopeMemo {
		m.m[k] = s
	}
	return s, nil
}
