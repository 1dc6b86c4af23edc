package caller

import (
	"os/user"
	"strconv"
	"sync"
	"time"
)

// nameTTL is how long a uid's or gid's name is remembered. Looking a name up
// may read /etc/passwd or ask a directory service (NSS), too slow to repeat
// per connection; names are only shown in logs and error bodies (a policy
// should match users by uid), so a rename or a new user shows up within
// this long.
const nameTTL = 5 * time.Minute

// maxNames bounds each name cache; when it is full it starts over.
const maxNames = 4096

// names is the process's cache of user and group names.
var names = newNameCache(time.Now, lookupUser, lookupGroup)

// nameCache remembers the names of uids and gids, including that an id has
// none. Safe for concurrent use; a lookup runs without the lock held, so two
// connections may look up the same new id at once.
type nameCache struct {
	now                     func() time.Time
	lookupUser, lookupGroup func(id int) string

	mu     sync.Mutex
	users  map[int]nameEntry
	groups map[int]nameEntry
}

// nameEntry is a remembered name and when it goes stale.
type nameEntry struct {
	name    string
	expires time.Time
}

func newNameCache(now func() time.Time, lookupUser, lookupGroup func(int) string) *nameCache {
	return &nameCache{
		now:         now,
		lookupUser:  lookupUser,
		lookupGroup: lookupGroup,
		users:       make(map[int]nameEntry),
		groups:      make(map[int]nameEntry),
	}
}

// user is the name of uid, or "" (also for -1).
func (c *nameCache) user(uid int) string { return c.get(c.users, uid, c.lookupUser) }

// group is the name of gid, or "" (also for -1).
func (c *nameCache) group(gid int) string { return c.get(c.groups, gid, c.lookupGroup) }

func (c *nameCache) get(m map[int]nameEntry, id int, lookup func(int) string) string {
	if id < 0 {
		return ""
	}
	now := c.now()
	c.mu.Lock()
	e, ok := m[id]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.name
	}
	name := lookup(id)
	c.mu.Lock()
	if len(m) >= maxNames {
		clear(m)
	}
	m[id] = nameEntry{name: name, expires: now.Add(nameTTL)}
	c.mu.Unlock()
	return name
}

// lookupUser is the name of uid from the system's user database, or "".
func lookupUser(uid int) string {
	u, err := user.LookupId(strconv.Itoa(uid))
	if err != nil {
		return ""
	}
	return u.Username
}

// lookupGroup is the name of gid from the system's group database, or "".
func lookupGroup(gid int) string {
	g, err := user.LookupGroupId(strconv.Itoa(gid))
	if err != nil {
		return ""
	}
	return g.Name
}
