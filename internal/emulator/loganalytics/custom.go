package loganalytics

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"
)

// AppendRows adds rows to the custom table name (e.g. "MyApp_CL") of
// workspaceID, creating it on first use, which is how rows sent to the
// Logs Ingestion emulator become queryable. Each row is a JSON object as
// decoded by encoding/json; a column's type comes from its first value
// (string, real or long, bool; objects and arrays are dynamic; TimeGenerated
// is a datetime and is set to the Service's clock when a row lacks it). A
// new column later widens the table; older rows hold null in it.
func (s *Service) AppendRows(workspaceID, name string, rows []map[string]any) error {
	if !strings.HasSuffix(name, "_CL") {
		return fmt.Errorf("append rows: table %q is not a custom table (its name ends in _CL)", name)
	}
	now := formatDatetime(s.now())
	s.mu.Lock()
	defer s.mu.Unlock()
	ws, ok := s.workspaces[strings.ToLower(workspaceID)]
	if !ok {
		return fmt.Errorf("append rows: unknown workspace %q", workspaceID)
	}
	t := ws.tables[name]
	if t == nil {
		t = &table{Name: name, Columns: []column{{Name: "TimeGenerated", Type: typeDatetime}}}
	} else {
		// Queries read the table without the lock: change a copy.
		c := *t
		t = &c
	}
	cols := t.Columns
	index := make(map[string]int, len(cols))
	for i, c := range cols {
		index[c.Name] = i
	}
	widened := false
	for _, row := range rows {
		for k, v := range row {
			if _, ok := index[k]; !ok {
				index[k] = len(cols)
				cols = append(cols[:len(cols):len(cols)], column{Name: k, Type: typeOfValue(k, v)})
				widened = true
			}
		}
	}
	if widened {
		// Older rows get a null in each new column; the rows already seen
		// by running queries stay as they were.
		out := make([][]any, len(t.Rows), len(t.Rows)+len(rows))
		for i, r := range t.Rows {
			out[i] = append(append(make([]any, 0, len(cols)), r...), make([]any, len(cols)-len(r))...)
		}
		t.Rows = out
	}
	t.Columns = cols
	for _, row := range rows {
		out := make([]any, len(cols))
		for k, v := range row {
			out[index[k]] = wireValue(cols[index[k]].Type, v)
		}
		if row["TimeGenerated"] == nil {
			out[0] = now
		}
		t.Rows = append(t.Rows, out)
	}
	tables := maps.Clone(ws.tables)
	tables[name] = t
	ws.tables = tables
	return nil
}

// typeOfValue is a new column's type from its first value.
func typeOfValue(name string, v any) string {
	switch x := v.(type) {
	case string:
		if name == "TimeGenerated" {
			return typeDatetime
		}
		if _, err := time.Parse(time.RFC3339Nano, x); err == nil {
			return typeDatetime
		}
		return typeString
	case float64:
		if x == float64(int64(x)) {
			return typeLong
		}
		return typeReal
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return typeLong
		}
		return typeReal
	case bool:
		return typeBool
	case map[string]any, []any:
		return typeDynamic
	}
	return typeString
}

// wireValue is v as a value of a column of type typ.
func wireValue(typ string, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case json.Number:
		if typ == typeLong {
			if n, err := x.Int64(); err == nil {
				return n
			}
		}
		f, _ := x.Float64()
		return f
	case float64:
		if typ == typeLong && x == float64(int64(x)) {
			return int64(x)
		}
		return x
	case string:
		if typ == typeDatetime {
			if t, err := time.Parse(time.RFC3339Nano, x); err == nil {
				return formatDatetime(t)
			}
		}
		return x
	case bool:
		return x
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// catalog returns ws's tables as they are now. AppendRows replaces the map
// and the tables it changes instead of changing them, so a query can read
// the result without the lock.
func (s *Service) catalog(ws *workspace) map[string]*table {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ws.tables
}
