//! docs/reference/cli.md, rendered from the clap definition: each command's
//! usage and its flags by heading, with their help, environment variable,
//! default and values. A few lines over clap's own `Command`/`Arg` API; no
//! crate renders Markdown grouped by help heading with the environment
//! variables (clap-markdown renders neither headings nor env).

use std::fmt::Write;

use clap::{Arg, Command};

pub fn markdown(mut cli: Command) -> String {
    cli.build();
    let mut out = String::new();
    out.push_str(
        "# Command-line reference\n\n\
         <!-- Generated from src/cli.rs: do not edit. A test fails when it is stale; \
         regenerate with `EBSNAP_BLESS=1 cargo test --lib cli_reference`. -->\n\n",
    );
    if let Some(about) = cli.get_long_about().or(cli.get_about()) {
        writeln!(out, "{}\n", text(&about.to_string())).unwrap();
    }
    out.push_str(
        "Each command takes only the flags listed under it, after the command \
         (`ebsnap run --dry-run`). The logging flags are the exception: every \
         command takes them, before or after it. A flag's environment variable \
         is read when the flag is not given.\n\n",
    );
    out.push_str("| Command | What it does |\n|---|---|\n");
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        writeln!(
            out,
            "| [`ebsnap {name}`](#ebsnap-{name}) | {} |",
            text(&about)
        )
        .unwrap();
    }
    out.push_str("\n## Logging flags (every command)\n\n");
    for arg in cli
        .get_arguments()
        .filter(|a| shown(a) && a.is_global_set())
    {
        out.push_str(&flag(arg));
    }
    // clap's own `help` command aside.
    let names: Vec<String> = cli
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .filter(|name| name != "help")
        .collect();
    for name in names {
        let sub = cli.find_subcommand_mut(&name).expect("a listed command");
        let usage = sub.render_usage().to_string();
        let usage = usage.trim().trim_start_matches("Usage: ");
        write!(out, "\n## ebsnap {name}\n\n").unwrap();
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            writeln!(out, "{}\n", text(&about.to_string())).unwrap();
        }
        writeln!(out, "```text\n{usage}\n```").unwrap();
        let positionals: Vec<&Arg> = sub.get_positionals().filter(|a| shown(a)).collect();
        if !positionals.is_empty() {
            out.push_str("\n### Arguments\n\n");
            for arg in positionals {
                out.push_str(&flag(arg));
            }
        }
        // The headings in the order of their first flag; own flags first.
        let mut headings: Vec<Option<&str>> = Vec::new();
        let flags: Vec<&Arg> = sub
            .get_arguments()
            .filter(|a| shown(a) && !a.is_positional() && !a.is_global_set())
            .collect();
        for arg in &flags {
            if !headings.contains(&arg.get_help_heading()) {
                headings.push(arg.get_help_heading());
            }
        }
        for heading in headings {
            writeln!(out, "\n### {}\n", heading.unwrap_or("Options")).unwrap();
            for arg in flags.iter().filter(|a| a.get_help_heading() == heading) {
                out.push_str(&flag(arg));
            }
        }
    }
    out
}

/// Hidden flags (none yet) and clap's own --help and --version stay out.
fn shown(arg: &Arg) -> bool {
    !arg.is_hide_set() && !matches!(arg.get_id().as_str(), "help" | "version")
}

/// One flag: its names and value, then what it reads and defaults to,
/// then its help and the values it takes.
fn flag(arg: &Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|names| {
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    let takes_value = arg.get_action().takes_values();
    let name = match (arg.get_short(), arg.get_long()) {
        _ if arg.is_positional() => value.clone(),
        (Some(short), Some(long)) => format!("-{short}, --{long}"),
        (None, Some(long)) => format!("--{long}"),
        (Some(short), None) => format!("-{short}"),
        (None, None) => arg.get_id().to_string(),
    };
    let mut head = if takes_value && !arg.is_positional() {
        format!("`{name} {value}`")
    } else {
        format!("`{name}`")
    };
    let mut facts: Vec<String> = Vec::new();
    if let Some(aliases) = arg.get_visible_aliases() {
        facts.extend(aliases.iter().map(|a| format!("also `--{a}`")));
    }
    if matches!(
        arg.get_action(),
        clap::ArgAction::Append | clap::ArgAction::Count
    ) {
        facts.push("repeatable".into());
    }
    if let Some(env) = arg.get_env() {
        facts.push(format!("env `{}`", env.to_string_lossy()));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if takes_value && !defaults.is_empty() {
        facts.push(format!("default `{}`", defaults.join(" ")));
    }
    if !facts.is_empty() {
        head = format!("{head} ({})", facts.join(", "));
    }
    let help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut item = match text(&help) {
        help if help.is_empty() => format!("- {head}\n"),
        help => format!("- {head}  \n  {}\n", help.replace("\n\n", "\n\n  ")),
    };
    let values: Vec<_> = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set())
        .collect();
    if takes_value && !values.is_empty() {
        for value in values {
            match value.get_help() {
                Some(help) => writeln!(
                    item,
                    "  - `{}`: {}",
                    value.get_name(),
                    text(&help.to_string())
                ),
                None => writeln!(item, "  - `{}`", value.get_name()),
            }
            .unwrap();
        }
    }
    item
}

/// Help text as Markdown: the characters it would take for markup
/// escaped (`ebsnap:*`, `'<instance> <device>'`).
fn text(help: &str) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.trim().chars() {
        if matches!(c, '*' | '<' | '>' | '|' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
