package loganalytics

import (
	"fmt"
	"time"
)

// DataBaseTime is the fixed instant the canned tables' timestamps count back
// from: every row is at or before it, so query results never depend on the
// clock.
var DataBaseTime = time.Date(2024, time.May, 1, 12, 0, 0, 0, time.UTC)

// demoTenantID is the TenantId the canned rows carry.
const demoTenantID = "72f988bf-86f1-41af-91ab-2d7cd011db47"

// cannedTables returns fresh copies of the canned tables, keyed by name:
// Heartbeat (12 rows), AzureActivity (8), Perf (12) and Usage (6). Between
// them they use every column type the emulator produces except long, int
// for literals aside (print and count give those).
func cannedTables() map[string]*table {
	ts := func(d time.Duration) string { return formatDatetime(DataBaseTime.Add(-d)) }
	tabs := map[string]*table{}

	type computer struct {
		name, ip, osType, osName, version, env string
		lat, lon                               float64
	}
	computers := []computer{
		{"vm-web-01", "10.0.0.4", "Linux", "Ubuntu", "1.19.0", "Azure", 52.3667, 4.8945},
		{"vm-web-02", "10.0.0.5", "Linux", "Ubuntu", "1.19.0", "Azure", 52.3667, 4.8945},
		{"vm-sql-01", "10.0.1.4", "Windows", "Windows Server 2022 Datacenter", "10.20.18069.0", "Non-Azure", 47.6062, -122.3321},
	}
	hb := &table{Name: "Heartbeat", Columns: []column{
		{"TenantId", typeString}, {"SourceSystem", typeString}, {"TimeGenerated", typeDatetime},
		{"SourceComputerId", typeString}, {"ComputerIP", typeString}, {"Computer", typeString},
		{"Category", typeString}, {"OSType", typeString}, {"OSName", typeString}, {"Version", typeString},
		{"IsGatewayInstalled", typeBool}, {"RemoteIPLatitude", typeReal}, {"RemoteIPLongitude", typeReal},
		{"ComputerEnvironment", typeString}, {"ResourceId", typeString}, {"Type", typeString},
	}}
	for i := 0; i < 4; i++ {
		for j, c := range computers {
			hb.Rows = append(hb.Rows, []any{
				demoTenantID, "OpsManager", ts(time.Duration(i) * time.Minute),
				fmt.Sprintf("9d2a4b1c-0000-4000-8000-00000000000%d", j+1), c.ip, c.name,
				"Direct Agent", c.osType, c.osName, c.version,
				false, c.lat, c.lon,
				c.env, "/subscriptions/" + demoSubscriptionID + "/resourceGroups/demo/providers/Microsoft.Compute/virtualMachines/" + c.name, "Heartbeat",
			})
		}
	}
	tabs[hb.Name] = hb

	aa := &table{Name: "AzureActivity", Columns: []column{
		{"TimeGenerated", typeDatetime}, {"Category", typeString}, {"Level", typeString},
		{"OperationNameValue", typeString}, {"ActivityStatusValue", typeString}, {"Caller", typeString},
		{"CallerIpAddress", typeString}, {"CorrelationId", typeGUID}, {"ResourceGroup", typeString},
		{"SubscriptionId", typeString}, {"Properties_d", typeDynamic}, {"Type", typeString},
	}}
	activities := []struct {
		cat, level, op, status, caller string
	}{
		{"Administrative", "Informational", "MICROSOFT.COMPUTE/VIRTUALMACHINES/WRITE", "Success", "alice@contoso.com"},
		{"Administrative", "Informational", "MICROSOFT.COMPUTE/VIRTUALMACHINES/START/ACTION", "Start", "alice@contoso.com"},
		{"Administrative", "Error", "MICROSOFT.STORAGE/STORAGEACCOUNTS/DELETE", "Failure", "bob@contoso.com"},
		{"Administrative", "Informational", "MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE", "Success", "alice@contoso.com"},
		{"Policy", "Warning", "MICROSOFT.AUTHORIZATION/POLICIES/AUDIT/ACTION", "Succeeded", "Microsoft.Authorization"},
		{"Recommendation", "Informational", "MICROSOFT.ADVISOR/RECOMMENDATIONS/AVAILABLE/ACTION", "Active", "Microsoft.Advisor"},
		{"Alert", "Critical", "MICROSOFT.INSIGHTS/METRICALERTS/ACTIVATED/ACTION", "Activated", "Microsoft.Insights"},
		{"ServiceHealth", "Informational", "MICROSOFT.RESOURCEHEALTH/HEALTHEVENT/ACTION", "Active", "Microsoft.ResourceHealth"},
	}
	for i, a := range activities {
		aa.Rows = append(aa.Rows, []any{
			ts(time.Duration(i*7) * time.Minute), a.cat, a.level, a.op, a.status, a.caller,
			fmt.Sprintf("203.0.113.%d", 10+i), fmt.Sprintf("5b3f2c1d-0000-4000-8000-0000000000%02d", i+1), "DEMO",
			demoSubscriptionID, fmt.Sprintf(`{"eventCategory":%q,"entity":"/subscriptions/%s/resourceGroups/demo"}`, a.cat, demoSubscriptionID), "AzureActivity",
		})
	}
	tabs[aa.Name] = aa

	perf := &table{Name: "Perf", Columns: []column{
		{"TimeGenerated", typeDatetime}, {"Computer", typeString}, {"ObjectName", typeString},
		{"CounterName", typeString}, {"InstanceName", typeString}, {"CounterValue", typeReal},
		{"SampleCount", typeInt}, {"Type", typeString},
	}}
	counters := []struct{ object, counter, instance string }{
		{"Processor", "% Processor Time", "_Total"},
		{"Memory", "Available MBytes", "Memory"},
		{"Logical Disk", "% Free Space", "/"},
		{"Network Adapter", "Bytes Received/sec", "eth0"},
	}
	for i, c := range counters {
		for j, comp := range computers {
			v := float64(10*(i+1)) + float64(j)*2.5 + 0.25
			perf.Rows = append(perf.Rows, []any{
				ts(time.Duration(i) * time.Minute), comp.name, c.object, c.counter, c.instance, v, int32(1 + j), "Perf",
			})
		}
	}
	tabs[perf.Name] = perf

	usage := &table{Name: "Usage", Columns: []column{
		{"TimeGenerated", typeDatetime}, {"StartTime", typeDatetime}, {"EndTime", typeDatetime},
		{"DataType", typeString}, {"Solution", typeString}, {"Quantity", typeReal},
		{"QuantityUnit", typeString}, {"IsBillable", typeBool}, {"Type", typeString},
	}}
	kinds := []struct {
		dataType, solution string
		quantity           float64
		billable           bool
	}{
		{"Heartbeat", "LogManagement", 0.5, true},
		{"AzureActivity", "LogManagement", 1.25, false},
		{"Perf", "LogManagement", 12.75, true},
	}
	for h := 0; h < 2; h++ {
		for _, k := range kinds {
			start := time.Duration(h+1) * time.Hour
			usage.Rows = append(usage.Rows, []any{
				ts(start - time.Hour), ts(start), ts(start - time.Hour), k.dataType, k.solution,
				k.quantity * float64(h+1), "MBytes", k.billable, "Usage",
			})
		}
	}
	tabs[usage.Name] = usage
	return tabs
}
