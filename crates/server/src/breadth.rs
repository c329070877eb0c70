//! Breadth from measured recall. Ten times a second, off the request path, tenants' kept graph
//! questions are answered again (`Engine::audit_recall`: exactly, and at each breadth of the
//! ladder), for at most [`AUDIT_BUDGET`] of one thread's time in all (short slices, so that no
//! request waits long behind an audit on a busy core: 2% of a core in all), and every second
//! each tenant's graph is set to the least breadth whose measured recall holds `recall_target`
//! (`Engine::tune_search_breadth`). The estimate shows in `/metrics` (`reco_search`) and in
//! each tenant's view (`search`).

use std::time::{Duration, Instant};

use actix_web::web::Data;
use reco_engine::Engine;

use crate::state::AppState;

/// The time the audits may take each tenth of a second, over every tenant: 2% of one core.
const AUDIT_BUDGET: Duration = Duration::from_millis(2);

/// Audits every tenth of a second and tunes every second, until the server stops; does nothing
/// when the target is 0.
pub async fn keep_tuning(state: Data<AppState>) {
    let target = state.settings.recall_target;
    if target <= 0.0 {
        return;
    }
    let mut round = 0usize;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !state.is_ready() {
            continue;
        }
        let engine = state.engine.clone();
        round = round.wrapping_add(1);
        let spent = tokio::task::spawn_blocking(move || tune(&engine, target, round))
            .await
            .unwrap_or_default();
        // One audit of a large tenant (its exact scan) can take longer than a slice: rest in
        // proportion, so that audits stay near 2% of a core whatever the tenants' size.
        if spent > AUDIT_BUDGET {
            tokio::time::sleep(spent * 49).await;
        }
    }
}

/// One round: audits until the budget is spent, starting each round at another tenant so that
/// none waits behind the others for long; every tenth round, tunes every tenant.
fn tune(engine: &Engine, target: f64, round: usize) -> Duration {
    let started = Instant::now();
    let tenants = engine.tenants();
    let count = tenants.len().max(1);
    for tenant in tenants
        .iter()
        .cycle()
        .skip(round % count)
        .take(tenants.len())
    {
        while started.elapsed() < AUDIT_BUDGET {
            match engine.audit_recall(tenant) {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
    }
    let spent = started.elapsed();
    if !round.is_multiple_of(10) {
        return spent;
    }
    for tenant in &tenants {
        if let Ok(Some(estimate)) = engine.tune_search_breadth(tenant, target) {
            tracing::debug!(%tenant, breadth = estimate.breadth, recall = estimate.recall, samples = estimate.samples, "search breadth");
        }
    }
    spent
}
