package httpapi

import (
	"sync"
	"sync/atomic"

	"github.com/entrabroker/broker/internal/azure"
)

// scopeMemo remembers successful scope normalizations, so a hot /token
// request does not parse its resource URL again. It is a copy-on-write map
// read without a lock; it stops growing at maxScopeMemo entries (a caller
// sending ever new scopes then just pays the parse).
type scopeMemo struct {
	m  atomic.Pointer[map[scopeMemoKey]string]
	mu sync.Mutex
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
	if p := m.m.Load(); p != nil {
		if s, ok := (*p)[k]; ok {
			return s, nil
		}
	}
	var s string
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
	var old map[scopeMemoKey]string
	if p := m.m.Load(); p != nil {
		old = *p
	}
	if len(old) < maxScopeMemo {
		next := make(map[scopeMemoKey]string, len(old)+1)
		for key, v := range old {
			next[key] = v
		}
		next[k] = s
		m.m.Store(&next)
	}
	return s, nil
}
