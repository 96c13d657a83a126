//! Every setting with one value, declared once: its name in `config.toml`,
//! its flag and environment variable (for those that have them), its
//! default and what it means. The configuration takes its defaults from
//! here, the command line its help text and environment variables, and
//! docs/configuration.md's table is rendered from it; tests check
//! `config.toml`, the command line and the page against it.

use std::str::FromStr;

/// One setting.
#[derive(Debug)]
pub struct Setting {
    /// Its name in `config.toml` (`limits.max_clients`: `max_clients` in
    /// `[limits]`); `None` for a setting given only on the command line or
    /// in the environment.
    pub key: Option<&'static str>,
    /// Its default.
    pub default: DefaultValue,
    /// Its long flag (`--max-clients`), if it has one.
    pub flag: Option<&'static str>,
    /// Its environment variable, if it has one.
    pub env: Option<&'static str>,
    /// What it means (one sentence or two; the command line's help).
    pub doc: &'static str,
}

/// A setting's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A value, as written in `config.toml` (TOML: strings quoted).
    Value(&'static str),
    /// No value: the setting is off, none, or worked out at start; the
    /// words say which.
    Words(&'static str),
}

const fn s(
    key: &'static str,
    default: DefaultValue,
    flag: Option<&'static str>,
    env: Option<&'static str>,
    doc: &'static str,
) -> Setting {
    Setting { key: Some(key), default, flag, env, doc }
}

use DefaultValue::{Value, Words};

/// The settings.
pub static SETTINGS: &[Setting] = &[
    s("listen", Value("\"127.0.0.1:6380\""), Some("listen"), Some("RESPSEAL_LISTEN"), "Address clients connect to."),
    s(
        "backend",
        Value("\"redis://127.0.0.1:6379\""),
        Some("backend"),
        Some("RESPSEAL_BACKEND"),
        "The Redis behind respseal: redis://[user:pass@]host:port[/db]; rediss:// for TLS ([backend_tls]); \
         redis-sentinel://[user:pass@]h:p[,h:p]/service[/db] behind Sentinel; redis-cluster://[user:pass@]h:p[,h:p…] \
         in front of Redis Cluster (rediss-sentinel://, rediss-cluster:// with TLS).",
    ),
    s(
        "mode",
        Value("\"shared\""),
        Some("mode"),
        Some("RESPSEAL_MODE"),
        "Link mode: shared (multiplexed backend connections, a session pinned to its own only when it needs \
         connection state) or dedicated (one backend connection per client; --dedicated).",
    ),
    s(
        "shared_links",
        Value("2"),
        Some("shared-links"),
        Some("RESPSEAL_SHARED_LINKS"),
        "Shared backend connections per (database, protocol) group, divided among the worker threads (at least \
         one each).",
    ),
    s(
        "threads",
        Words("one per CPU"),
        Some("threads"),
        Some("RESPSEAL_THREADS"),
        "Worker threads; each serves its clients on a single-threaded runtime with its own shared links.",
    ),
    s(
        "idle_yield",
        Value("true"),
        Some("idle-yield"),
        Some("RESPSEAL_IDLE_YIELD"),
        "Workers yield the CPU once before waiting for I/O: faster when clients or Redis share the proxy's \
         cores; false gives a lower p99 there.",
    ),
    s(
        "log",
        Value("\"info\""),
        Some("log"),
        Some("RESPSEAL_LOG"),
        "Log filter: error, warn, info, debug or a tracing filter.",
    ),
    s(
        "admin_listen",
        Words("off"),
        Some("admin-listen"),
        Some("RESPSEAL_ADMIN_LISTEN"),
        "Serve /metrics, /healthz and /readyz on this address.",
    ),
    s(
        "allow_unauthenticated",
        Value("false"),
        Some("allow-unauthenticated"),
        Some("RESPSEAL_ALLOW_UNAUTHENTICATED"),
        "Serve clients without [[users]] on an address other hosts can reach (refused by default, as Redis's \
         protected mode refuses it).",
    ),
    s(
        "admin_allow_remote",
        Value("false"),
        Some("admin-allow-remote"),
        Some("RESPSEAL_ADMIN_ALLOW_REMOTE"),
        "Serve the admin endpoints on an address other hosts can reach (refused by default).",
    ),
    s(
        "allow_dropping_rules",
        Value("false"),
        None,
        None,
        "Let a reload (SIGHUP) drop or narrow a sealing rule (remove it, change its pattern or fields, add a \
         seal = false exemption); by default such a reload is refused and the running rules kept.",
    ),
    s("namespace", Value("\"respseal\""), None, None, "Bound into every sealed value (and every pseudonymised name)."),
    s(
        "names.key_file",
        Words("none"),
        None,
        None,
        "Key file (respseal keygen) of the name key, for rules with names = \"pseudonymise\": a key of its own.",
    ),
    s("names.key_env", Words("none"), None, None, "Or: environment variable holding the name key's 64 hex digits."),
    s(
        "limits.max_clients",
        Value("10000"),
        Some("max-clients"),
        Some("RESPSEAL_MAX_CLIENTS"),
        "Most clients connected at once; more get -ERR max number of clients reached.",
    ),
    s(
        "limits.max_frame_bytes",
        Value("536870912"),
        None,
        None,
        "Largest request in bytes (512 MiB); refused from its header, never buffered.",
    ),
    s(
        "limits.max_bulk_bytes",
        Value("536870912"),
        None,
        None,
        "Largest argument in bytes; lowered to Redis's proto-max-bulk-len, learned at start.",
    ),
    s("limits.max_args", Value("1048576"), None, None, "Most arguments per command."),
    s(
        "limits.max_inflight",
        Value("16384"),
        None,
        None,
        "Replies outstanding per client (respseal's own included) before respseal stops reading from it.",
    ),
    s(
        "limits.max_buffered_bytes",
        Value("1073741824"),
        None,
        None,
        "Bytes buffered from all clients together (1 GiB); past it a request is refused and its client closed.",
    ),
    s(
        "limits.output_normal",
        Value("\"0 0 0\""),
        None,
        None,
        "Output limit of ordinary clients, Redis's client-output-buffer-limit syntax HARD SOFT SECONDS (none: \
         respseal stops reading from Redis for such a client instead).",
    ),
    s(
        "limits.output_shared",
        Value("\"64mb 32mb 10\""),
        None,
        None,
        "Output limit of ordinary clients on a shared link, whose unread replies respseal holds.",
    ),
    s("limits.output_pubsub", Value("\"32mb 8mb 60\""), None, None, "Output limit of subscribers and MONITOR."),
    s("limits.output_replica", Value("\"256mb 64mb 60\""), None, None, "Output limit of replication streams."),
    s("timeouts.connect_ms", Value("2000"), None, None, "Backend connect + handshake deadline, milliseconds."),
    s(
        "timeouts.command_ms",
        Value("30000"),
        None,
        None,
        "Longest wait for the next reply while commands are in flight, milliseconds: then -ERR respseal: \
         backend timeout and the connection is replaced (blocking commands, subscribers, MONITOR and running \
         code exempt); 0 = never.",
    ),
    s("timeouts.idle_secs", Value("0"), None, None, "Close clients idle this many seconds; 0 = never."),
    s("timeouts.shutdown_grace_secs", Value("10"), None, None, "Drain time at SIGTERM, seconds."),
    Setting {
        key: None,
        default: Words("none"),
        flag: Some("config"),
        env: Some("RESPSEAL_CONFIG"),
        doc: "Configuration file.",
    },
    Setting {
        key: None,
        default: Words("off"),
        flag: Some("dedicated"),
        env: None,
        doc: "Give every client its own backend connection (same as --mode dedicated).",
    },
    Setting {
        key: None,
        default: Words("none"),
        flag: Some("seal"),
        env: Some("RESPSEAL_SEAL"),
        doc: "Seal keys matching this Redis glob pattern (repeatable; comma-separated in the environment), after \
              the file's rules.",
    },
    Setting {
        key: None,
        default: Words("none"),
        flag: Some("key-file"),
        env: Some("RESPSEAL_KEY_FILE"),
        doc: "Key file (from respseal keygen) used as the primary key; a primary from the file becomes \
              decrypt-only.",
    },
    Setting {
        key: None,
        default: Words("off"),
        flag: Some("allow-insecure-key-file"),
        env: Some("RESPSEAL_ALLOW_INSECURE_KEY_FILE"),
        doc: "Load key files that group or others can read or write, or that another user owns (refused by \
              default, as ssh refuses such private keys); each one is named in the log.",
    },
];

/// The setting named `name`: its `config.toml` key, or its flag for one
/// given only on the command line.
///
/// # Panics
/// When no setting has that name: a programming error the unit tests catch.
pub fn setting(name: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == Some(name) || (s.key.is_none() && s.flag == Some(name)))
        .expect("every setting the code names is declared in SETTINGS")
}

/// The default of `key`, parsed (TOML strings unquoted).
///
/// # Panics
/// When the setting has no value default or it does not parse: programming
/// errors, every default is parsed by the unit tests.
pub fn default_of<T: FromStr>(key: &str) -> T {
    match setting(key).default {
        Value(v) => v.trim_matches('"').parse().ok().expect("a setting's default parses as its type"),
        Words(w) => panic!("{key} has no value default ({w})"),
    }
}

/// A flag's help: the setting's meaning and its default.
pub fn help(name: &str) -> String {
    let s = setting(name);
    match s.default {
        Value(v) => format!("{} [default: {}]", s.doc, v.trim_matches('"')),
        Words("none" | "off") => s.doc.to_string(),
        Words(w) => format!("{} [default: {w}]", s.doc),
    }
}

/// A flag's environment variable.
///
/// # Panics
/// When the setting has none (a programming error the tests catch).
pub fn env(name: &str) -> &'static str {
    setting(name).env.expect("a flag with an environment variable")
}

/// docs/configuration.md's table of settings, rendered from [`SETTINGS`].
pub fn markdown() -> String {
    let mut out = String::from("| setting | default | flag / environment | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let name = s.key.map_or("(command line only)".to_string(), |k| format!("`{k}`"));
        let default = match s.default {
            Value(v) => format!("`{}`", v.trim_matches('"')),
            Words(w) => w.to_string(),
        };
        let flag = [s.flag.map(|f| format!("`--{f}`")), s.env.map(|e| format!("`{e}`"))]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ");
        out.push_str(&format!("| {name} | {default} | {flag} | {} |\n", s.doc.replace('|', "\\|")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag of `respseal serve` is a declared setting with the same
    /// environment variable, and every declared flag exists.
    #[test]
    fn the_command_line_is_the_declared_settings() {
        use clap::CommandFactory;
        let cli = crate::app::cli::Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let mut seen = 0;
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let s = SETTINGS.iter().find(|s| s.flag == Some(long)).unwrap_or_else(|| panic!("--{long} undeclared"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), s.env, "--{long}");
            seen += 1;
        }
        assert_eq!(seen, SETTINGS.iter().filter(|s| s.flag.is_some()).count(), "a declared flag is missing");
    }

    /// `config.toml` shows every setting it can hold, in its section, with
    /// its default (a value line, or commented out).
    #[test]
    fn config_toml_shows_every_default() {
        let text = include_str!("../config.toml");
        let mut section = String::new();
        let mut found: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let l = line.strip_prefix("# ").unwrap_or(line).trim_end();
            if l.starts_with('[') && l.ends_with(']') && !l.contains(' ') {
                section = l.trim_matches(|c| c == '[' || c == ']').to_string();
                continue;
            }
            let Some((name, value)) = l.split_once(" = ") else { continue };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                continue;
            }
            let key = if section.is_empty() { name.to_string() } else { format!("{section}.{name}") };
            found.push((key, value.split("  #").next().unwrap_or(value).trim().to_string()));
        }
        for s in SETTINGS {
            let Some(key) = s.key else { continue };
            let values: Vec<&String> = found.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect();
            assert!(!values.is_empty(), "config.toml does not show {key}");
            if let Value(v) = s.default
                && key != "admin_listen"
            {
                assert!(values.iter().any(|x| *x == v), "config.toml shows {key} = {values:?}, the default is {v}");
            }
        }
    }

    /// docs/configuration.md's table is [`markdown`]'s
    /// (`RESPSEAL_WRITE_README=1` rewrites it).
    #[test]
    fn the_docs_table_is_the_declared_settings() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let page = std::fs::read_to_string(path).expect("page");
        let (begin, end) = ("<!-- settings:begin (generated from src/settings.rs) -->\n", "<!-- settings:end -->");
        let (a, b) = (page.find(begin).expect("begin marker") + begin.len(), page.find(end).expect("end marker"));
        let want = markdown();
        if page[a..b] != want && std::env::var_os("RESPSEAL_WRITE_README").is_some() {
            std::fs::write(path, format!("{}{}{}", &page[..a], want, &page[b..])).expect("write page");
            return;
        }
        assert_eq!(
            &page[a..b],
            want,
            "docs/configuration.md's settings differ (RESPSEAL_WRITE_README=1 rewrites them)"
        );
    }

    #[test]
    fn names_are_unique_and_flags_have_what_clap_needs() {
        for (i, a) in SETTINGS.iter().enumerate() {
            assert!(a.key.is_some() || a.flag.is_some(), "{a:?}");
            for b in &SETTINGS[i + 1..] {
                assert!(a.key.is_none() || a.key != b.key, "{a:?}");
                assert!(a.flag.is_none() || a.flag != b.flag, "{a:?}");
                assert!(a.env.is_none() || a.env != b.env, "{a:?}");
            }
            if let Some(e) = a.env {
                assert!(e.starts_with("RESPSEAL_") && e == e.to_ascii_uppercase(), "{e}");
            }
        }
    }

    /// Every value default is valid TOML for its key, and the file
    /// configuration (unknown fields rejected) knows every key.
    #[test]
    fn every_default_is_a_valid_value_of_its_key() {
        let mut top = String::new();
        let mut sections: std::collections::BTreeMap<&str, String> = Default::default();
        for s in SETTINGS {
            let (Some(key), Value(v)) = (s.key, s.default) else { continue };
            match key.split_once('.') {
                Some((section, name)) => sections.entry(section).or_default().push_str(&format!("{name} = {v}\n")),
                None => top.push_str(&format!("{key} = {v}\n")),
            }
        }
        for (section, body) in sections {
            top.push_str(&format!("[{section}]\n{body}"));
        }
        let file: crate::config::FileConfig = toml::from_str(&top).expect("the defaults are valid config.toml");
        let given = crate::config::Config::build(file, &Default::default()).expect("the defaults are valid");
        let defaults = crate::config::Config::build(Default::default(), &Default::default()).expect("no file");
        // Given explicitly or left out, the same configuration.
        assert_eq!(format!("{given:?}"), format!("{defaults:?}"));
    }
}
