package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/entrabroker/broker/internal/config"
)

// command is one subcommand as the help describes it.
type command struct {
	// name is the word after broker.
	name string
	// args is what follows the name in the usage line.
	args string
	// summary is the command's line in the list of commands.
	summary string
	// about is the paragraph at the top of the command's help.
	about string
	// groups are the configuration settings the command uses; their flags
	// are listed after the command's own.
	groups config.Group
}

// commands are the subcommands in the order of the list.
var commands = []command{
	{
		name: "serve", args: "[flags]",
		summary: "run the broker (configuration from the environment; flags win)",
		about: "Run the broker: the token API on BROKER_LISTEN and metrics and health on BROKER_OPS_LISTEN,\n" +
			"for one or more app registrations. Flags without a command mean serve.",
		groups: config.AllSettings,
	},
	{
		name: "demo", args: "[flags]",
		summary: "run the broker against the built-in emulator: no Azure account needed",
		about: "Run the built-in Entra ID and Log Analytics emulator on a free loopback port and the broker\n" +
			"against it, with the emulator's demo app: no Azure account, no credential. The AZURE_*\n" +
			"settings and BROKER_CONFIG are ignored. It prints what to try once it listens.",
		groups: config.ServerSettings | config.LogSettings,
	},
	{
		name: "emulator", args: "[flags]",
		summary: "run the Entra ID and Log Analytics emulator alone, for any client to point at",
		about: "Run the emulated Entra ID and Log Analytics alone, for a broker, an Azure SDK or curl to point\n" +
			"at. It prints its URL and the demo registration (tenant, client ID, secret, workspace).",
	},
	{
		name: "token", args: "(--scope S | --resource R) [flags]",
		summary: "print one token as JSON, fetched with the broker's configuration",
		about: "Fetch one token for a scope or resource with the broker's configuration and print it as\n" +
			"JSON. On failure, explain Entra's answer (the AADSTS code and what to do) on stderr.",
		groups: config.IdentitySettings | config.LogSettings,
	},
	{
		name: "check", args: "[--workspace ID] [--json] [flags]",
		summary: "check the configuration, each identity's token and (--workspace) a Log Analytics query",
		about: "Check the configuration (every problem at once), fetch a token for each identity and show\n" +
			"its claims (never the token), and with --workspace run the query print 1 in that Log\n" +
			"Analytics workspace with each token. The exit status is 1 when a check failed.",
		groups: config.IdentitySettings | config.UpstreamSettings | config.LogSettings,
	},
	{
		name: "refresh", args: "[--identity NAME] [--scope S] [--json]",
		summary: "make the running broker fetch fresh tokens now (through its ops listener)",
		about: "Ask the running broker, through its ops listener (BROKER_OPS_LISTEN), to fetch fresh tokens\n" +
			"now — all, or one identity's or scope's — for instance after a role or permission change.\n" +
			"Tokens held stay in service until the new ones arrive.",
	},
	{
		name: "version", summary: "print the version (also: broker --version)",
	},
	{
		name: "help", args: "[command | config]",
		summary: "list the commands; with a command, its flags; help config lists every setting",
	},
}

// commandNamed returns the command called name.
func commandNamed(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// writeUsage writes the list of commands, one line each.
func writeUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("broker — a token broker for Microsoft Entra ID\n\nUsage: broker <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun \"broker <command> -h\" for a command's flags, \"broker help config\" for every setting.\n")
	_, _ = io.WriteString(w, b.String())
}

// parseFlags parses args with the command's own flags (registered by own,
// may be nil) and, when cfg is not nil, the configuration flags of the
// command's groups, bound to cfg. For -h it writes the command's help to
// stdout and returns flag.ErrHelp; a mistake is a usageError.
func parseFlags(c command, args []string, stdout io.Writer, cfg *config.Config, own func(*flag.FlagSet)) error {
	fs := flag.NewFlagSet("broker "+c.name, flag.ContinueOnError)
	// The flag package would print the error and every flag on a mistake;
	// the error alone says more, with where to find the help.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	ownFS := flag.NewFlagSet("", flag.ContinueOnError)
	if own != nil {
		own(ownFS)
	}
	var groups []*flag.FlagSet
	if cfg != nil {
		for _, g := range config.Groups {
			if c.groups&g == 0 {
				continue
			}
			gfs := flag.NewFlagSet(g.String(), flag.ContinueOnError)
			cfg.RegisterFlags(gfs, g)
			groups = append(groups, gfs)
		}
	}
	for _, set := range append([]*flag.FlagSet{ownFS}, groups...) {
		set.VisitAll(func(f *flag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(stdout, c, ownFS, groups)
			return err
		}
		return usageError{fmt.Sprintf("%s\nrun \"broker %s -h\" for its flags", err, c.name)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q\nrun \"broker %s -h\" for its flags", fs.Arg(0), c.name)}
	}
	return nil
}

// writeHelp writes a command's help: what it does, its own flags, then the
// configuration flags it uses under one heading per group.
func writeHelp(w io.Writer, c command, own *flag.FlagSet, groups []*flag.FlagSet) {
	fmt.Fprintf(w, "Usage: broker %s %s\n\n%s\n", c.name, c.args, c.about)
	if hasFlags(own) {
		fmt.Fprint(w, "\nFlags:\n")
		own.SetOutput(w)
		own.PrintDefaults()
	}
	if len(groups) == 0 {
		return
	}
	fmt.Fprint(w, "\nConfiguration: each flag below is also the environment variable named in its line, and\n"+
		"the flag wins. \"broker help config\" lists every setting with its default.\n")
	for _, gfs := range groups {
		fmt.Fprintf(w, "\n%s:\n", gfs.Name())
		gfs.SetOutput(w)
		gfs.PrintDefaults()
		var envOnly []string
		for _, s := range config.Settings() {
			if s.Flag == "" && s.Group.String() == gfs.Name() {
				envOnly = append(envOnly, s.Env)
			}
		}
		if len(envOnly) > 0 {
			fmt.Fprintf(w, "  environment only (a flag would show it in the process list): %s\n", strings.Join(envOnly, ", "))
		}
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// writeConfigHelp writes every setting, by group: the variable, the flag,
// the default and the meaning, all from the config table.
func writeConfigHelp(w io.Writer) {
	var b strings.Builder
	b.WriteString("Every setting of the broker: an environment variable and, except for secrets, a flag of the\n" +
		"same meaning; the flag wins. \"broker <command> -h\" lists the ones a command uses.\n")
	all := config.Settings()
	for _, g := range config.Groups {
		fmt.Fprintf(&b, "\n%s:\n", g)
		for _, s := range all {
			if s.Group != g {
				continue
			}
			fmt.Fprintf(&b, "\n  %s", s.Env)
			if s.Flag != "" {
				fmt.Fprintf(&b, ", --%s", s.Flag)
			} else {
				b.WriteString(" (no flag: it would show in the process list)")
			}
			if s.Default != "" {
				fmt.Fprintf(&b, " (default %s)", s.Default)
			}
			fmt.Fprintf(&b, "\n      %s\n", s.Usage)
		}
	}
	_, _ = io.WriteString(w, b.String())
}

// runHelp is `broker help [command | config]`; the help of a command comes
// from runCommand(command, "-h"), so that its flags are registered in one
// place only.
func runHelp(args []string, stdout io.Writer, runCommand func(args ...string) error) error {
	switch {
	case len(args) == 0, args[0] == "-h", args[0] == "-help", args[0] == "--help":
		writeUsage(stdout)
		return nil
	case len(args) > 1:
		return usageError{"broker help takes one command, or config"}
	case args[0] == "config":
		writeConfigHelp(stdout)
		return nil
	}
	c, ok := commandNamed(args[0])
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q\nrun \"broker help\" for the commands", args[0])}
	}
	if c.name == "version" || c.name == "help" {
		writeUsage(stdout)
		return nil
	}
	return runCommand(c.name, "-h")
}
