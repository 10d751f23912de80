// Command mangen writes bombwatch(8) and the bash completion from the
// commands' own help (the binary's `COMMAND -h`) and the README's
// reference sections, so that neither can drift from them:
//
//	go run ./internal/mangen -bin bin/bombwatch -readme README.md > bombwatch.8
//	go run ./internal/mangen -bin bin/bombwatch -completion > bombwatch.bash
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
)

func main() {
	bin := flag.String("bin", "bin/bombwatch", "the bombwatch `binary` whose help is read")
	readme := flag.String("readme", "README.md", "the `README` whose reference sections are taken")
	completion := flag.Bool("completion", false, "write the bash completion instead of the man page")
	version := flag.String("version", "", "the version the page names")
	flag.Parse()
	cmds, err := commands(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
	if *completion {
		writeCompletion(cmds)
		return
	}
	md, err := os.ReadFile(*readme)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
	writeMan(cmds, md, *version)
}

// command is one command as its help says it.
type command struct {
	name, summary, usage string
	flags                []flagHelp
}

type flagHelp struct{ name, help string }

var listed = regexp.MustCompile(`^  ([a-z]+) +(.*)$`)

// commands reads the usage list and each command's -h.
func commands(bin string) ([]command, error) {
	out, _ := exec.Command(bin, "help").CombinedOutput()
	var cmds []command
	for _, line := range strings.Split(string(out), "\n") {
		m := listed.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c := command{name: m[1], summary: m[2]}
		help, _ := exec.Command(bin, c.name, "-h").CombinedOutput()
		sc := bufio.NewScanner(bytes.NewReader(help))
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "usage: "):
				c.usage = strings.TrimPrefix(l, "usage: bombwatch "+c.name+" ")
			case strings.HasPrefix(l, "  -"):
				// "-name value" as Go prints it; written as users
				// type it, --name (one letter: -c).
				f := strings.Fields(l)
				name := strings.TrimPrefix(f[0], "-")
				if len(name) > 1 {
					name = "-" + name
				}
				c.flags = append(c.flags, flagHelp{name: "-" + name})
			case strings.HasPrefix(l, "    \t") && len(c.flags) > 0:
				last := &c.flags[len(c.flags)-1]
				last.help = strings.TrimSpace(last.help + " " + strings.TrimSpace(l))
			}
		}
		cmds = append(cmds, c)
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("%s help lists no command: %s", bin, out)
	}
	return cmds, nil
}

// esc makes text safe in roff: backslashes, and a leading dot or quote.
func esc(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// plain drops markdown's emphasis and links for roff.
var link = regexp.MustCompile(`\[([^\]]+)\]\([^)]+\)`)

func plain(s string) string {
	s = link.ReplaceAllString(s, "$1")
	s = strings.ReplaceAll(s, "**", "")
	return strings.ReplaceAll(s, "`", "")
}

// section returns the README's lines under a "## name" heading.
func section(md []byte, name string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(string(md), "\n") {
		if strings.HasPrefix(l, "## ") {
			in = strings.TrimPrefix(l, "## ") == name
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out
}

// writeMarkdown renders a README section: headings, code blocks, table
// rows and paragraphs.
func writeMarkdown(lines []string) {
	code := false
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "```"):
			if code {
				fmt.Println(".fi\n.RE")
			} else {
				fmt.Println(".RS\n.nf")
			}
			code = !code
		case code:
			fmt.Println(esc(l))
		case strings.HasPrefix(l, "### "):
			fmt.Println(".SS " + esc(plain(strings.TrimPrefix(l, "### "))))
		case strings.HasPrefix(l, "|---") || strings.HasPrefix(l, "|--"):
		case strings.HasPrefix(l, "|"):
			cells := strings.Split(strings.Trim(l, "|"), " | ")
			fmt.Println(".TP\n" + esc(plain(strings.TrimSpace(cells[0]))))
			fmt.Println(esc(plain(strings.TrimSpace(strings.Join(cells[1:], "; ")))))
		case strings.TrimSpace(l) == "":
			fmt.Println(".PP")
		case strings.HasPrefix(l, "- "):
			fmt.Println(".IP \\(bu 2\n" + esc(plain(strings.TrimPrefix(l, "- "))))
		default:
			fmt.Println(esc(plain(strings.TrimSpace(l))))
		}
	}
}

func writeMan(cmds []command, md []byte, version string) {
	fmt.Printf(".TH BOMBWATCH 8 \"\" \"bombwatch %s\" \"System Administration\"\n", esc(version))
	fmt.Println(".SH NAME\nbombwatch \\- watch mail server logs and stop mail bombs")
	fmt.Println(".SH SYNOPSIS")
	for _, c := range cmds {
		fmt.Println(".B bombwatch " + esc(c.name) + " " + esc(c.usage) + "\n.br")
	}
	fmt.Println(".SH DESCRIPTION")
	fmt.Println("bombwatch follows Postfix, sendmail and qmail logs, counts what each sender, client, network and account does in sliding windows kept in SQLite, and blocks keys over their limits through nftables, iptables, the MTA's access maps or a hook, lifting the blocks when they end.")
	fmt.Println(".SH COMMANDS")
	for _, c := range cmds {
		fmt.Printf(".SS %s\n%s\n.PP\n.B bombwatch %s %s\n", esc(c.name), esc(c.summary), esc(c.name), esc(c.usage))
		for _, f := range c.flags {
			fmt.Printf(".TP\n.B %s\n%s\n", esc(f.name), esc(f.help))
		}
	}
	fmt.Println(".SH CONFIGURATION")
	writeMarkdown(section(md, "Config"))
	fmt.Println(".SH FILES")
	fmt.Println(".TP\n/etc/bombwatch/bombwatch.yaml\nthe config; conf.d/*.yaml beside it is read after it")
	fmt.Println(".TP\n/var/lib/bombwatch/state.db\nthe state: windows, blocks, positions, report data")
	fmt.Println(".SH EXIT STATUS\n0 ok, 1 runtime failure, 2 bad usage or bad config.")
	fmt.Println(".SH SEE ALSO\n.BR nft (8),\n.BR postmap (1),\n.BR makemap (8),\n.BR systemctl (1)")
}

func writeCompletion(cmds []command) {
	var names []string
	fmt.Println("# bash completion for bombwatch, made by internal/mangen from its help.")
	fmt.Println("_bombwatch() {")
	fmt.Println("\tlocal cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]}")
	fmt.Println("\tif [ \"$COMP_CWORD\" -eq 1 ]; then")
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Printf("\t\tCOMPREPLY=($(compgen -W '%s' -- \"$cur\"))\n\t\treturn\n\tfi\n", strings.Join(names, " "))
	fmt.Println("\tcase $cmd in")
	for _, c := range cmds {
		var fl []string
		for _, f := range c.flags {
			fl = append(fl, f.name)
		}
		fmt.Printf("\t%s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")) ;;\n", c.name, strings.Join(fl, " "))
	}
	fmt.Println("\tesac")
	fmt.Println("\t[ ${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- \"$cur\"))")
	fmt.Println("}")
	fmt.Println("complete -F _bombwatch bombwatch")
}
