//! The memory an index takes per entity, measured by counting every allocation while a 20k × 128
//! catalogue is loaded. Run with `cargo bench -p reco-benches --bench memory`.
//!
//! The counter is a few lines wrapped around the system allocator; the crates that do this
//! (`stats_alloc`, `cap`) add nothing needed here.

#![allow(clippy::print_stdout)]
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use reco_benches::{SCALES, catalogue};
use reco_engine::{Engine, EngineConfig, Metric, TenantName, TenantSpec};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

/// An allocation's size as the signed counter takes it.
#[expect(
    clippy::cast_possible_wrap,
    reason = "a Layout's size never exceeds isize::MAX (Layout checks it)"
)]
fn signed(size: usize) -> isize {
    size as isize
}

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(signed(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(signed(layout.size()), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    println!(
        "| entities | dimension | raw vector bytes | bytes per entity | beyond the raw vector |"
    );
    println!("|---|---|---|---|---|");
    for scale in SCALES {
        let engine = Engine::new(EngineConfig::default()).expect("valid settings");
        let tenant = TenantName::parse("memory").expect("a valid name");
        let spec = TenantSpec::new(scale.dimension, Metric::Cosine).expect("a valid spec");
        engine
            .create_tenant(tenant.clone(), spec)
            .expect("a new tenant");
        // Counted from before the input exists to after it is all freed, so only what the
        // engine keeps remains. Batches of 1,000, as an import would send them.
        let before = LIVE.load(Ordering::Relaxed);
        let mut batch = catalogue(scale).into_iter().peekable();
        while batch.peek().is_some() {
            let chunk: Vec<_> = batch.by_ref().take(1000).collect();
            engine.upsert(&tenant, chunk).expect("a valid batch");
        }
        drop(batch);
        let after = LIVE.load(Ordering::Relaxed);
        let per_entity = (after - before) as f64 / scale.entities as f64;
        let raw = (scale.dimension * 4) as f64;
        println!(
            "| {} | {} | {raw:.0} | {per_entity:.0} | {:.0} |",
            scale.entities,
            scale.dimension,
            per_entity - raw
        );
    }
}
