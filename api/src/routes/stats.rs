//! Traffic at a glance: packets and bytes over time, protocols, top talkers, and the DNS names,
//! HTTP hosts and TLS server names seen, for a session and time range. Ranges filtered by session
//! and time only are summed from the per-minute rollups the parsers write (`traffic_minutes`),
//! with the packets of the partial minutes at either end; any other filter reads the packets.

use axum::Json;
use axum::extract::State;

use crate::input::Query;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::filter::{Filter, FilterParams, Narrowed, PACKETS};
use crate::routes::ensure_session_known;
use crate::state::AppState;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BucketParams {
    /// Width of the timeline's buckets (`10s`, `1m`, ...). Default: about 120 buckets over the range.
    #[param(min_length = 1, example = "1m")]
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
    /// Sources by bytes sent, by what they were at the end of the range, named as the service
    /// map's nodes: `namespace/workload`, else `namespace/pod`, `namespace/service/name`,
    /// `node/name`, the DNS name the session's answers gave, or the bare address. Summed over the
    /// top 200 source addresses.
    pub top_workloads: Vec<Count>,
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
/// Source addresses named and grouped for the top workloads.
const TALKERS_NAMED: i64 = 200;

/// The widest bucket: a year's (beyond it PostgreSQL's interval arithmetic gives up).
const MAX_BUCKET_SECONDS: i64 = 366 * 86_400;

/// Statistics of the packets matching the filters; the range defaults to the last hour.
#[utoipa::path(get, path = "/api/v1/stats", operation_id = "getStats", tag = "stats",
    params(FilterParams, BucketParams),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    mut filter: Narrowed,
    Query(bucket): Query<BucketParams>,
) -> Result<Json<Stats>, ApiError> {
    let until = filter.until.unwrap_or_else(Utc::now);
    let since = filter.since.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(ApiError::bad("since", "must be earlier than until"));
    }
    filter.set_range(since, until);
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
        // About 120 buckets; at least a minute over an hour or more, which the rollups can serve.
        None => {
            let step = *STEPS.iter().find(|&&s| span / s <= 120).unwrap_or(&86400);
            if span >= 3600 { step.max(60) } else { step }
        }
    };
    let rollups = rollup_minutes(&filter, since, until, bucket_seconds);
    let source = Source {
        filter: &filter,
        since,
        until,
        rollups,
    };

    let timeline = async {
        let mut q = QueryBuilder::<Postgres>::new("SELECT date_bin(make_interval(secs => ");
        q.push_bind(bucket_seconds as f64).push(
            "), t, '2000-01-01T00:00:00Z'::timestamptz) AS start, sum(p)::bigint AS packets, \
             coalesce(sum(b), 0)::bigint AS bytes FROM (",
        );
        source.push_rows(&mut q, "total", "''", "true");
        q.push(") AS rows GROUP BY 1 ORDER BY 1");
        q.build_query_as::<Bucket>().fetch_all(&state.pool).await
    };
    let protocols = grouped(
        &state,
        &source,
        "protocol",
        "coalesce(l7, transport, 'other')",
        "true",
        20,
    );
    let talkers = grouped(&state, &source, "talker", "host(src)", "src IS NOT NULL", TALKERS_NAMED);
    let dns = grouped(
        &state,
        &source,
        "dns",
        "l7_name",
        "l7 = 'dns' AND l7_name IS NOT NULL",
        TOP,
    );
    let http = grouped(
        &state,
        &source,
        "http",
        "l7_name",
        "l7 = 'http' AND l7_name IS NOT NULL",
        TOP,
    );
    let tls = grouped(
        &state,
        &source,
        "tls",
        "l7_name",
        "l7 = 'tls' AND l7_name IS NOT NULL",
        TOP,
    );
    // Six statements at once, so one request at a time: many callers of /stats queue here instead
    // of taking the whole pool from every other route.
    let _turn = state
        .limits
        .stats
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let (timeline, protocols, top_talkers, top_dns_names, top_http_hosts, top_tls_server_names) =
        tokio::try_join!(timeline, protocols, talkers, dns, http, tls)?;
    if let (true, Some(session)) = (timeline.is_empty(), &filter.session) {
        ensure_session_known(&state.pool, session).await?;
    }
    let at = until.min(Utc::now());
    let top_workloads = by_workload(&state, &source, &top_talkers, at).await?;
    let mut top_talkers = top_talkers;
    top_talkers.truncate(TOP as usize);
    Ok(Json(Stats {
        since,
        until,
        bucket_seconds,
        packets: timeline.iter().map(|b| b.packets).sum(),
        bytes: timeline.iter().map(|b| b.bytes).sum(),
        timeline,
        protocols,
        top_talkers,
        top_workloads,
        top_dns_names,
        top_http_hosts,
        top_tls_server_names,
    }))
}

/// `talkers` (by address) named and summed by workload (or whatever else names them). An address
/// is named once, at `at`, unless its owner changed within the range (an address reused by
/// another pod): then each of its packets is named at its own time (rare, and exact; a busy
/// reused address costs a lookup per distinct timestamp).
async fn by_workload(
    state: &AppState,
    source: &Source<'_>,
    talkers: &[Count],
    at: DateTime<Utc>,
) -> Result<Vec<Count>, sqlx::Error> {
    let session = source.filter.session.as_deref().unwrap_or("");
    let addresses: Vec<&str> = talkers.iter().map(|t| t.name.as_str()).collect();
    let moved: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT host(address) FROM endpoint_history WHERE address = ANY($1::inet[]) \
         AND ((since > $2 AND since < $3) OR (until > $2 AND until < $3))",
    )
    .bind(&addresses)
    .bind(source.since)
    .bind(source.until)
    .fetch_all(&state.pool)
    .await?;
    // (address, time to name it at, packets, bytes)
    let mut parts: Vec<(String, DateTime<Utc>, i64, i64)> = talkers
        .iter()
        .filter(|t| !moved.contains(&t.name))
        .map(|t| (t.name.clone(), at, t.packets, t.bytes))
        .collect();
    if !moved.is_empty() {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT host(src), ts, count(*), coalesce(sum(original_len), 0)::bigint FROM packets WHERE src = ANY(",
        );
        q.push_bind(moved).push("::inet[])");
        source.filter.push_sql(&mut q, &PACKETS);
        q.push(" GROUP BY 1, 2");
        parts.extend(
            q.build_query_as::<(String, DateTime<Utc>, i64, i64)>()
                .fetch_all(&state.pool)
                .await?,
        );
    }
    let lookups: Vec<crate::endpoints::Lookup<'_>> = parts
        .iter()
        .map(|(address, at, _, _)| crate::endpoints::Lookup {
            session,
            address,
            at: *at,
        })
        .collect();
    let names = crate::endpoints::name(&state.pool, &lookups).await?;
    let mut sums: std::collections::HashMap<String, (i64, i64)> = Default::default();
    for ((address, _, packets, bytes), endpoint) in parts.iter().zip(names) {
        // The service map's node ids, so that the two views name a source alike.
        let key = crate::routes::service_map::node(address, endpoint.as_ref()).id;
        let sum = sums.entry(key).or_default();
        sum.0 += packets;
        sum.1 += bytes;
    }
    let mut counts: Vec<Count> = sums
        .into_iter()
        .map(|(name, (packets, bytes))| Count { name, packets, bytes })
        .collect();
    counts.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    counts.truncate(TOP as usize);
    Ok(counts)
}

/// The whole minutes of [since, until) that the per-minute rollups may answer for: only when
/// nothing but the session and the time range filters, and buckets are whole minutes.
fn rollup_minutes(
    filter: &Filter,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    bucket_seconds: i64,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    if !filter.conditions.is_empty() || bucket_seconds % 60 != 0 {
        return None;
    }
    let floor = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp().div_euclid(60) * 60, 0);
    let first = floor(since)? + chrono::Duration::minutes(i64::from(floor(since)? < since));
    let last = floor(until)?;
    (first < last).then_some((first, last))
}

/// Where the statistics' rows come from: the rollups for whole minutes and the packets of the
/// partial minutes at either end, or the packets alone.
struct Source<'a> {
    filter: &'a Narrowed,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    rollups: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Source<'_> {
    /// The session, or the sessions the caller may see.
    fn push_sessions(&self, q: &mut QueryBuilder<Postgres>) {
        if let Some(session) = &self.filter.session {
            q.push(" AND session = ").push_bind(session.clone());
        }
        if let Some(sessions) = &self.filter.sessions {
            q.push(" AND session = ANY(").push_bind(sessions.clone()).push(")");
        }
    }

    /// Pushes a subquery of `(t, name, p, b)` rows: time, key, packets, bytes. `key` and `only`
    /// are constants of this file, never user input.
    fn push_rows(
        &self,
        q: &mut QueryBuilder<Postgres>,
        dimension: &'static str,
        key: &'static str,
        only: &'static str,
    ) {
        let Some((first, last)) = self.rollups else {
            q.push(format_args!(
                "SELECT ts AS t, {key} AS name, 1 AS p, original_len AS b FROM packets WHERE {only}"
            ));
            self.filter.push_sql(q, &PACKETS);
            return;
        };
        q.push("SELECT minute AS t, key AS name, packets AS p, bytes AS b FROM traffic_minutes WHERE dimension = ")
            .push_bind(dimension)
            .push(" AND minute >= ")
            .push_bind(first)
            .push(" AND minute < ")
            .push_bind(last);
        self.push_sessions(q);
        // Each partial minute as its own simple range, which the BRIN index narrows to that minute.
        for (from, to) in [(self.since, first), (last, self.until)] {
            q.push(format_args!(
                " UNION ALL SELECT ts, {key}, 1, original_len FROM packets WHERE {only} AND ts >= "
            ))
            .push_bind(from)
            .push(" AND ts < ")
            .push_bind(to);
            self.push_sessions(q);
        }
    }
}

/// Packets and bytes per key of `dimension` among rows where `only` holds, largest by bytes first.
async fn grouped(
    state: &AppState,
    source: &Source<'_>,
    dimension: &'static str,
    key: &'static str,
    only: &'static str,
    top: i64,
) -> Result<Vec<Count>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT name, sum(p)::bigint AS packets, coalesce(sum(b), 0)::bigint AS bytes FROM (",
    );
    source.push_rows(&mut q, dimension, key, only);
    q.push(") AS rows GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT ").push_bind(top);
    q.build_query_as::<Count>().fetch_all(&state.pool).await
}
