//! Offline evaluations run by the server for its dashboard and API
//! (`POST /v1/tenants/{tenant}/model/evaluation`): `reco evaluate --tenant` without the
//! command line. The tenant's catalogue and whole log are read from storage, split
//! leave-last-out (each user's last like or purchase is their test item), and every strategy
//! the data allows answers every tested user (`reco_engine::evaluate`), on the blocking pool
//! and the learner's threads, never on a request's path. The last evaluation of each tenant is
//! kept in memory, tied to the tenant's incarnation: a tenant deleted and made again has none.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reco_engine::evaluate::{Evaluation, EvaluationReport, Progress, Split, evaluate};
use reco_engine::{LearnParams, Lineage, Millis, TenantName};

use crate::api::{EvaluationOut, EvaluationStatus, rfc3339};
use crate::error::ApiError;
use crate::state::AppState;

/// One evaluation of a tenant, running or done.
#[derive(Debug, Clone)]
pub struct EvaluationRun {
    /// The incarnation of the tenant it evaluates.
    lineage: Lineage,
    started_at: Millis,
    finished_at: Option<Millis>,
    /// Answers computed so far, and in all.
    progress: Arc<(AtomicUsize, AtomicUsize)>,
    outcome: Option<Result<Arc<EvaluationReport>, String>>,
}

impl EvaluationRun {
    fn status(&self) -> EvaluationStatus {
        let (state, report, error) = match &self.outcome {
            None => ("running", None, None),
            Some(Ok(report)) => ("ready", Some(EvaluationOut::from(report.as_ref())), None),
            Some(Err(e)) => ("failed", None, Some(e.clone())),
        };
        EvaluationStatus {
            state,
            started_at: rfc3339(self.started_at),
            finished_at: self.finished_at.and_then(rfc3339),
            answered: self.progress.0.load(Ordering::Relaxed),
            answers: self.progress.1.load(Ordering::Relaxed),
            report,
            error,
        }
    }
}

/// The tenant's last evaluation here, if it evaluated this incarnation of the tenant.
pub fn status(state: &AppState, tenant: &TenantName) -> Result<Option<EvaluationStatus>, ApiError> {
    let lineage = state.engine.lineage(tenant)?;
    let runs = state
        .evaluations
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(runs
        .get(tenant)
        .filter(|run| run.lineage == lineage)
        .map(EvaluationRun::status))
}

/// Starts an evaluation of `tenant` in the background unless one runs; its status either way.
pub fn start(
    state: &actix_web::web::Data<AppState>,
    tenant: &TenantName,
) -> Result<EvaluationStatus, ApiError> {
    let lineage = state.engine.lineage(tenant)?;
    let run = {
        let mut runs = state
            .evaluations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(run) = runs.get(tenant)
            && run.lineage == lineage
            && run.outcome.is_none()
        {
            return Ok(run.status());
        }
        let run = EvaluationRun {
            lineage,
            started_at: state.engine.now(),
            finished_at: None,
            progress: Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))),
            outcome: None,
        };
        runs.insert(tenant.clone(), run.clone());
        run
    };
    let (worker, name, progress) = (state.clone(), tenant.clone(), run.progress.clone());
    tokio::spawn(async move {
        let outcome = run_one(&worker, &name, progress.clone()).await;
        match &outcome {
            Ok(report) => {
                tracing::info!(tenant = %name, tested = report.tested, "evaluation done");
            }
            Err(e) => tracing::warn!(tenant = %name, error = %e, "evaluation failed"),
        }
        let mut runs = worker
            .evaluations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Kept only where this run is still the tenant's (not deleted, not started again).
        if let Some(run) = runs.get_mut(&name)
            && Arc::ptr_eq(&run.progress, &progress)
        {
            run.finished_at = Some(worker.engine.now());
            run.outcome = Some(outcome.map(Arc::new));
        }
    });
    Ok(run.status())
}

/// Reads the tenant from storage and evaluates it with the tenant's own collaborative
/// settings and the server's engine settings.
async fn run_one(
    state: &AppState,
    tenant: &TenantName,
    progress: Arc<(AtomicUsize, AtomicUsize)>,
) -> Result<EvaluationReport, String> {
    let data = state
        .store
        .read_tenant(tenant)
        .await
        .map_err(|e| format!("reading the tenant from storage failed: {e}"))?
        .ok_or_else(|| format!("tenant `{tenant}` was deleted"))?;
    let mut evaluation = Evaluation::new(Split::LeaveLastOut);
    evaluation.learning = LearnParams {
        threads: LearnParams::default().threads,
        ..data.record.learning.params
    };
    evaluation.config = state.settings.engine.clone();
    let spec = data.record.spec;
    crate::background::run("reco-evaluate", move || {
        evaluate(
            spec,
            data.entities,
            data.interactions,
            &evaluation,
            &|p| match p {
                Progress::Start(n) => progress.1.store(n, Ordering::Relaxed),
                Progress::Answered => {
                    progress.0.fetch_add(1, Ordering::Relaxed);
                }
            },
        )
    })
    .await
    .map_err(|e| e.to_string())
}
