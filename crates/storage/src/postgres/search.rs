//! The `database` ranking mode: top-k by pgvector, through the tenant's HNSW index or an exact
//! scan, with the same filters the engine applies.

use pgvector::Vector;
use reco_engine::{EntityId, Filter, Metric, TenantName, TenantSpec};
use sqlx::{Postgres, QueryBuilder, Row};

use super::{PgStore, literal, operator};
use crate::error::Result;
use crate::model::DbSearch;
use crate::rows;

impl PgStore {
    /// Top-k in PostgreSQL: the HNSW index unless `exact`, then a sequential scan. Results are
    /// (id, score) in the API's units, best first, ties by id.
    pub async fn search(
        &self,
        tenant: &TenantName,
        spec: TenantSpec,
        query: &DbSearch<'_>,
    ) -> Result<Vec<(EntityId, f32)>> {
        let (op, _) = operator(spec.metric);
        let distance = if query.exact {
            format!("embedding {op} ")
        } else {
            format!("(embedding::vector({})) {op} ", spec.dimension)
        };
        let cast = if query.exact {
            "::vector".to_owned()
        } else {
            format!("::vector({})", spec.dimension)
        };
        let probe = Vector::from(query.vector.to_vec());
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT id, ");
        sql.push(&distance).push_bind(probe.clone()).push(&cast);
        sql.push(" AS d FROM entities WHERE tenant = ")
            .push(literal(tenant));
        push_filter(&mut sql, query.filter, query.exclude);
        if let Some(threshold) = query.score_threshold {
            // Score to distance: cosine d = 1 - s, dot d = -s, euclidean d = s.
            let bound = match spec.metric {
                Metric::Cosine => 1.0 - f64::from(threshold),
                Metric::Dot => -f64::from(threshold),
                Metric::Euclidean => f64::from(threshold),
            };
            sql.push(" AND ")
                .push(&distance)
                .push_bind(probe.clone())
                .push(&cast);
            sql.push(" <= ").push_bind(bound);
        }
        sql.push(" ORDER BY ")
            .push(&distance)
            .push_bind(probe)
            .push(&cast);
        if query.exact {
            sql.push(", id");
        }
        let want = i64::try_from(query.k + query.offset).map_err(rows::corrupt)?;
        sql.push(" LIMIT ").push_bind(want);
        let mut conn = self.conn().await?;
        let found = sql.build().fetch_all(&mut *conn).await?;
        let mut scored = found
            .iter()
            .map(|row| {
                let id = EntityId::parse(row.try_get::<&str, _>(0)?).map_err(rows::corrupt)?;
                let d: f64 = row.try_get(1)?;
                let score = match spec.metric {
                    Metric::Cosine => 1.0 - d,
                    Metric::Dot => -d,
                    Metric::Euclidean => d,
                };
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "pgvector answers distances in f64; the API's scores are f32"
                )]
                let score = score as f32;
                Ok((id, score))
            })
            .collect::<Result<Vec<_>>>()?;
        let higher = spec.metric.higher_is_better();
        scored.sort_by(|a, b| {
            let by_score = if higher {
                b.1.total_cmp(&a.1)
            } else {
                a.1.total_cmp(&b.1)
            };
            by_score.then_with(|| a.0.cmp(&b.0))
        });
        Ok(scored.into_iter().skip(query.offset).collect())
    }
}

fn push_filter(sql: &mut QueryBuilder<Postgres>, filter: &Filter, exclude: &[EntityId]) {
    if let Some(category) = &filter.category {
        sql.push(" AND category = ").push_bind(category.clone());
    }
    if !filter.tags_any.is_empty() {
        sql.push(" AND tags ?| ").push_bind(filter.tags_any.clone());
    }
    if !filter.tags_all.is_empty() {
        sql.push(" AND tags ?& ").push_bind(filter.tags_all.clone());
    }
    let excluded: Vec<String> = filter
        .exclude
        .iter()
        .chain(exclude)
        .map(|id| id.as_str().to_owned())
        .collect();
    if !excluded.is_empty() {
        sql.push(" AND id <> ALL(").push_bind(excluded).push(")");
    }
}
