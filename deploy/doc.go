// Package deploy holds the broker's packaging and operations artifacts and the
// tests that keep them honest: the Kubernetes sidecar manifests
// (deploy/kubernetes), the Prometheus alert rules and their unit tests
// (deploy/prometheus), the Grafana dashboard (deploy/grafana), and checks of
// the repository's Dockerfile. The tests compare every artifact with the
// broker's contract (listen addresses, routes, environment variables and
// metric names) and run promtool and a real Prometheus server against
// `broker demo` when those tools are installed.
//
// The package has no Go API; it exists for its tests.
package deploy
