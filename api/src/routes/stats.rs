//! Traffic at a glance: packets and bytes over time, protocols, top talkers, and the DNS names,
//! HTTP hosts and TLS server names seen, for a session and time range.

use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::filter::{Filter, FilterParams, PACKETS};
use crate::routes::ensure_session_known;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BucketParams {
    /// Width of the timeline's buckets (`10s`, `1m`, ...). Default: about 120 buckets over the range.
    pub bucket: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub bucket_seconds: i64,
    pub packets: i64,
    pub bytes: i64,
    pub timeline: Vec<Bucket>,
    pub protocols: Vec<Count>,
    /// Source addresses by bytes sent.
    pub top_talkers: Vec<Count>,
    pub top_dns_names: Vec<Count>,
    pub top_http_hosts: Vec<Count>,
    pub top_tls_server_names: Vec<Count>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub packets: i64,
    pub bytes: i64,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Count {
    pub name: String,
    pub packets: i64,
    pub bytes: i64,
}

/// Bucket widths a timeline may use, in seconds.
const STEPS: [i64; 12] = [1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 86400];
const TOP: i64 = 10;

/// The widest bucket: a year's (beyond it PostgreSQL's interval arithmetic gives up).
const MAX_BUCKET_SECONDS: i64 = 366 * 86_400;

/// Statistics of the packets matching the filters; the range defaults to the last hour.
#[utoipa::path(get, path = "/api/v1/stats", operation_id = "getStats", tag = "stats",
    params(FilterParams, BucketParams),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Query(filters): Query<FilterParams>,
    Query(bucket): Query<BucketParams>,
) -> Result<Json<Stats>, ApiError> {
    let mut filter = filters.check()?;
    let until = filter.until.unwrap_or_else(Utc::now);
    let since = filter.since.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(ApiError::bad("since", "must be earlier than until"));
    }
    (filter.since, filter.until) = (Some(since), Some(until));
    let span = (until - since).num_seconds().max(1);
    let bucket_seconds = match bucket.bucket.as_deref() {
        Some(text) => {
            let width = humantime::parse_duration(text.trim())
                .map_err(|_| ApiError::bad("bucket", format!("{text:?} is not a duration (10s, 1m, 1h)")))?;
            let seconds = i64::try_from(width.as_secs()).unwrap_or(i64::MAX);
            if !(1..=MAX_BUCKET_SECONDS).contains(&seconds) || span / seconds > 10_000 {
                return Err(ApiError::bad(
                    "bucket",
                    "use at least 1s and at most 366d, and at most 10000 buckets over the range",
                ));
            }
            seconds
        }
        None => *STEPS.iter().find(|&&s| span / s <= 120).unwrap_or(&86400),
    };

    let timeline = async {
        let mut q = QueryBuilder::<Postgres>::new("SELECT date_bin(make_interval(secs => ");
        q.push_bind(bucket_seconds as f64).push(
            "), ts, '2000-01-01T00:00:00Z'::timestamptz) AS start, count(*) AS packets, \
             coalesce(sum(original_len), 0)::bigint AS bytes FROM packets WHERE true",
        );
        filter.push_sql(&mut q, &PACKETS);
        q.push(" GROUP BY 1 ORDER BY 1");
        q.build_query_as::<Bucket>().fetch_all(&state.pool).await
    };
    let protocols = grouped(&state, &filter, "coalesce(l7, transport, 'other')", "true", 20);
    let talkers = grouped(&state, &filter, "host(src)", "src IS NOT NULL", TOP);
    let dns = grouped(&state, &filter, "l7_name", "l7 = 'dns' AND l7_name IS NOT NULL", TOP);
    let http = grouped(&state, &filter, "l7_name", "l7 = 'http' AND l7_name IS NOT NULL", TOP);
    let tls = grouped(&state, &filter, "l7_name", "l7 = 'tls' AND l7_name IS NOT NULL", TOP);
    let (timeline, protocols, top_talkers, top_dns_names, top_http_hosts, top_tls_server_names) =
        tokio::try_join!(timeline, protocols, talkers, dns, http, tls)?;
    if let (true, Some(session)) = (timeline.is_empty(), &filter.session) {
        ensure_session_known(&state.pool, session).await?;
    }
    Ok(Json(Stats {
        since,
        until,
        bucket_seconds,
        packets: timeline.iter().map(|b| b.packets).sum(),
        bytes: timeline.iter().map(|b| b.bytes).sum(),
        timeline,
        protocols,
        top_talkers,
        top_dns_names,
        top_http_hosts,
        top_tls_server_names,
    }))
}

/// Packets and bytes per value of `key` among rows where `only` holds, largest by bytes first.
/// `key` and `only` are constants of this file, never user input.
async fn grouped(
    state: &AppState,
    filter: &Filter,
    key: &'static str,
    only: &'static str,
    top: i64,
) -> Result<Vec<Count>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {key} AS name, count(*) AS packets, coalesce(sum(original_len), 0)::bigint AS bytes \
         FROM packets WHERE {only}"
    ));
    filter.push_sql(&mut q, &PACKETS);
    q.push(" GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ").push_bind(top);
    q.build_query_as::<Count>().fetch_all(&state.pool).await
}
