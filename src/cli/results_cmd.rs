//! `infermark audit`, `index rebuild`, `results list|show`, `report`, `serve`: reading the
//! results tree.

use super::{AuditArgs, IndexCommand, InvalidInput, ReportArgs, ResultsCommand, ServeArgs, exit};
use crate::provenance::sign::load_public_key;
use crate::store::RunStatus;
use crate::store::index::{self, Index, ListFilter};
use crate::verify;

/// The public keys of `--trust`, or `None` when none was given.
pub(super) fn trusted_keys(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<Option<Vec<crate::provenance::sign::TrustedKey>>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let keys = paths
        .iter()
        .map(|p| load_public_key(p).map_err(|e| InvalidInput(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(keys))
}

pub fn audit(a: AuditArgs) -> anyhow::Result<u8> {
    let trust = trusted_keys(&a.trust)?;
    let report = verify::audit_with_trust(&a.path, trust.as_deref())?;
    print!("{}", report.render());
    Ok(if report.is_clean() {
        exit::OK
    } else {
        exit::AUDIT_FAILED
    })
}

pub fn index(c: IndexCommand) -> anyhow::Result<u8> {
    match c {
        IndexCommand::Rebuild { results } => {
            let (_, report) = Index::rebuild(&results.results)?;
            println!("{}", report.render(&results.results));
            Ok(exit::OK)
        }
    }
}

pub fn results(c: ResultsCommand) -> anyhow::Result<u8> {
    match c {
        ResultsCommand::List {
            point,
            status,
            results,
        } => {
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(RunStatus::parse(s).ok_or_else(|| {
                    InvalidInput(format!("`--status {s}`: expected `completed` or `failed`"))
                })?),
            };
            let index = Index::open(&results.results)?;
            let rows = index.list(&ListFilter {
                point_prefix: point,
                status,
            })?;
            print!("{}", index::render_list(&rows));
            Ok(exit::OK)
        }
        ResultsCommand::Show { id, results } => {
            let index = Index::open(&results.results)?;
            let shown = index.show(&id)?;
            print!("{}", index::render_show(&shown));
            Ok(exit::OK)
        }
    }
}

pub fn report(a: ReportArgs) -> anyhow::Result<u8> {
    let trust = trusted_keys(&a.trust)?.unwrap_or_default();
    let opts = crate::site::BuildOptions {
        results: a.results.results,
        out: a.out,
        trust,
    };
    let report = crate::site::build(&opts)?;
    print!("{}", report.render(&opts.out));
    Ok(exit::OK)
}

pub fn serve(a: ServeArgs) -> anyhow::Result<u8> {
    let opts = crate::serve::ServeOptions {
        results: a.results.results,
        addr: a.addr,
        public: a.public,
        trust: trusted_keys(&a.trust)?.unwrap_or_default(),
    };
    super::measure_cmd::runtime()?.block_on(async {
        let stop = super::signals::shutdown_requested();
        let server = crate::serve::Server::start(&opts)?;
        let local = server.local_addr()?;
        if !local.ip().is_loopback() {
            eprintln!(
                "warning: serving on {local}, not a loopback address: other machines can read this tree"
            );
        }
        // The first stdout line is the contract with whoever started us.
        println!("serving {} on http://{local}/", opts.results.display());
        server
            .run(async {
                stop.await;
            })
            .await?;
        anyhow::Ok(exit::OK)
    })
}
