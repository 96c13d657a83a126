//! The operator subcommands: `keygen`, `check`, `inspect`, `rewrap`.

use std::process::ExitCode;
use std::sync::Arc;

use crate::backend::conn::ConnSettings;
use crate::config::Config;

use super::cli::{InspectArgs, RewrapArgs};
use super::serve::conn_settings;
use super::topology::follow_sentinels;
use super::{EX_DATAERR, EX_UNAVAILABLE, EX_USAGE, runtime};

pub(crate) fn keygen(out: &std::path::Path) -> ExitCode {
    match crate::crypto::keyring::generate_key_file(out) {
        Ok(id) => {
            println!("wrote key {} to {}", crate::crypto::keyring::format_key_id(id), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("respseal keygen: {e}");
            ExitCode::from(EX_USAGE)
        }
    }
}

/// Where the operator commands (inspect, check, rewrap) work: the backend,
/// or behind Redis Cluster each master in turn (after the slot map is
/// read).
pub(crate) fn operator_targets(cfg: &Config) -> Vec<Arc<ConnSettings>> {
    let base = conn_settings(cfg);
    match &cfg.cluster {
        Some(cluster) => cluster.map().masters.iter().map(|m| Arc::new(base.for_node(m))).collect(),
        None => vec![Arc::new(base)],
    }
}

pub(crate) fn inspect(args: &InspectArgs) -> ExitCode {
    let cfg = match super::load(&args.serve) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let patterns: Vec<String> = if args.patterns.is_empty() {
        cfg.sealer.as_ref().map(|s| s.rules().patterns().map(str::to_string).collect()).unwrap_or_default()
    } else {
        args.patterns.clone()
    };
    if patterns.is_empty() {
        eprintln!("respseal: inspect: give a PATTERN or configure rules");
        return ExitCode::from(EX_USAGE);
    }
    let select = match (args.resealed, args.drop_resealed) {
        (_, true) => crate::inspect::Select::DropResealed,
        (true, _) => crate::inspect::Select::Resealed,
        _ => crate::inspect::Select::All,
    };
    let now = crate::clock::now_unix();
    runtime().block_on(async move {
        follow_sentinels(&cfg).await;
        let mut stdout = std::io::stdout();
        let keyring = cfg.sealer.as_ref().map(|s| s.keyring());
        let mut total = Ok(crate::inspect::Summary::default());
        for settings in operator_targets(&cfg) {
            let one = crate::inspect::run(&settings, &patterns, select, keyring, now, &mut stdout).await;
            total = total.and_then(|t| one.map(|s| t.merged(&s)));
        }
        match total {
            Ok(s) => {
                println!(
                    "{} keys: {} sealed ({} re-sealed from legacy plaintext), {} without an envelope{}",
                    s.keys,
                    s.sealed,
                    s.resealed,
                    s.plaintext,
                    if select == crate::inspect::Select::DropResealed {
                        format!(", {} re-sealed values dropped", s.dropped)
                    } else {
                        String::new()
                    }
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("respseal: inspect: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    })
}

pub(crate) fn check(cfg: Config, sample: u64) -> ExitCode {
    let rt = runtime();
    rt.block_on(async move {
        println!(
            "configuration: ok (listen {}, backend {}, mode {})",
            cfg.listen,
            cfg.backend,
            if cfg.dedicated { "dedicated" } else { "shared" }
        );
        if let Some(s) = &cfg.sealer {
            println!("keyring: {}", s.keyring().describe());
        }
        follow_sentinels(&cfg).await;
        let targets = operator_targets(&cfg);
        if targets.is_empty() {
            println!("backend: the cluster's slot map could not be read");
            return ExitCode::from(EX_UNAVAILABLE);
        }
        for settings in &targets {
            let db = if cfg.cluster.is_some() { 0 } else { cfg.backend.db };
            if let Err(e) = crate::backend::conn::open(settings, db, crate::protocol::Proto::Resp2).await {
                println!("backend: {e}");
                return ExitCode::from(EX_UNAVAILABLE);
            }
        }
        println!("backend: ok");
        // Envelopes under names no rule seals any more: read through
        // respseal they are envelopes, not values.
        if sample > 0 {
            let rules = cfg.rules();
            let (mut looked, mut found) = (0, 0);
            for settings in &targets {
                match crate::rewrap::uncovered(settings, rules, cfg.sealer.as_ref(), sample.saturating_mul(10)).await {
                    Ok((l, f)) => (looked, found) = (looked + l, found + f),
                    Err(e) => {
                        println!("uncovered: {e}");
                        return ExitCode::from(EX_UNAVAILABLE);
                    }
                }
            }
            if found > 0 {
                println!(
                    "uncovered: {found} of {looked} values under names no rule seals are sealed envelopes \
                     (a sealing rule was dropped or narrowed): through respseal they read as envelopes; \
                     restore the rule before deploying this configuration"
                );
                return ExitCode::from(EX_DATAERR);
            }
            println!("uncovered: {looked} values under names no rule seals, none sealed");
        }
        let Some(sealer) = cfg.sealer.as_ref().filter(|_| sample > 0) else {
            return ExitCode::SUCCESS;
        };
        let patterns: Vec<String> = sealer.rules().patterns().map(str::to_string).collect();
        // Behind a cluster, SAMPLE values from each master.
        let mut sampled = Ok((0, std::collections::BTreeMap::new()));
        for settings in &targets {
            let one = crate::rewrap::sample(settings, sealer, &patterns, sample).await;
            sampled = sampled.and_then(|(n, mut failed): (u64, std::collections::BTreeMap<&str, u64>)| {
                one.map(|(m, f)| {
                    for (r, k) in f {
                        *failed.entry(r).or_default() += k;
                    }
                    (n + m, failed)
                })
            });
        }
        match sampled {
            Ok((opened, failed)) if failed.is_empty() => {
                println!("sample: {opened} sealed values opened, 0 failed");
                ExitCode::SUCCESS
            }
            Ok((opened, failed)) => {
                let reasons: Vec<String> = failed.iter().map(|(r, n)| format!("{r}={n}")).collect();
                let total: u64 = failed.values().sum();
                println!("sample: {opened} sealed values opened, {total} failed ({})", reasons.join(", "));
                println!("the configured keyring does not open values in Redis: do not deploy it");
                ExitCode::from(EX_DATAERR)
            }
            Err(e) => {
                println!("sample: {e}");
                ExitCode::from(EX_UNAVAILABLE)
            }
        }
    })
}

pub(crate) fn rewrap(args: &RewrapArgs) -> ExitCode {
    use crate::rewrap::{Counts, Cursor, End, Options};
    let cfg = match super::load(&args.serve) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let Some(sealer) = cfg.sealer.as_ref() else {
        eprintln!("respseal: rewrap: no rules are configured, so there is nothing to rewrap");
        return ExitCode::from(EX_USAGE);
    };
    let cursor = match args.cursor.as_deref().map(Cursor::parse) {
        None => Cursor::start(),
        Some(Some(c)) => c,
        Some(None) => {
            eprintln!("respseal: rewrap: --cursor must be PATTERN:CURSOR as printed by rewrap");
            return ExitCode::from(EX_USAGE);
        }
    };
    let patterns = if args.patterns.is_empty() {
        sealer.rules().patterns().map(str::to_string).collect()
    } else {
        args.patterns.clone()
    };
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let opts = Options {
        patterns,
        legacy: args.legacy,
        drop_resealed: args.drop_resealed,
        max_per_sec: args.max_per_sec,
        cursor,
        stop: Arc::clone(&stop),
    };
    if cfg.cluster.is_some() && args.cursor.is_some() {
        eprintln!(
            "respseal: rewrap: behind redis-cluster:// --cursor applies to one master: resume with \
             --backend redis://MASTER (as printed) --cursor …"
        );
        return ExitCode::from(EX_USAGE);
    }
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = terminal.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    });
    let mut last_line = std::time::Instant::now();
    let mut counts = Counts::default();
    let mut last_cursor = opts.cursor.clone();
    let mut last_master: Option<String> = None;
    let result = runtime().block_on(async {
        follow_sentinels(&cfg).await;
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        });
        // Behind a cluster, each master in turn.
        let targets = operator_targets(&cfg);
        let mut result = Ok(End::Done);
        for settings in &targets {
            if cfg.cluster.is_some() {
                eprintln!("rewrap: master {}", settings.url.addr);
                last_master = Some(settings.url.addr.clone());
                last_cursor = opts.cursor.clone();
            }
            result = crate::rewrap::run(settings, sealer, &opts, &mut counts, |c, cur| {
                last_cursor.clone_from(cur);
                match &bar {
                    Some(b) => b.set_message(format!("{c}  cursor {cur}")),
                    None if last_line.elapsed() >= std::time::Duration::from_secs(2) => {
                        last_line = std::time::Instant::now();
                        eprintln!("rewrap: {c}  cursor {cur}");
                    }
                    None => {}
                }
            })
            .await;
            if !matches!(result, Ok(End::Done)) {
                break;
            }
        }
        result
    });
    let resume = |cur: &dyn std::fmt::Display| match &last_master {
        Some(m) => format!("--backend redis://{m} --cursor {cur} (then the masters after it)"),
        None => format!("--cursor {cur}"),
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    println!("rewrap: {counts}");
    match result {
        Ok(End::Done) if counts.failures() == 0 => ExitCode::SUCCESS,
        Ok(End::Done) => {
            println!("some values did not open with the configured keyring: they were left as they are");
            ExitCode::from(EX_DATAERR)
        }
        Ok(End::Stopped(cur)) => {
            println!("interrupted; resume with {}", resume(&cur));
            ExitCode::from(130)
        }
        Err(e) => {
            println!("rewrap: {e}; resume with {}", resume(&last_cursor));
            ExitCode::from(EX_UNAVAILABLE)
        }
    }
}
