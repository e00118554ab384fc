//! The filter query parameters, checked into a [`Filter`].

use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;

use super::values::{NameKind, Network, ObjectName, check_protocol, parse_port};
use super::{Expr, Filter, Side, parse_expression};
use crate::error::ApiError;

/// Filters shared by `/packets`, `/flows`, `/stats`, the pcap export and the live stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Session as `namespace/name`.
    #[param(min_length = 3, pattern = r"^[^/\x00]+/[^/\x00]+$", example = "default/web")]
    pub session: Option<String>,
    /// Start of the time range: RFC 3339 (`2026-11-27T10:00:00Z`) or a duration ago (`15m`).
    #[param(min_length = 1, example = "15m")]
    pub since: Option<String>,
    /// End of the time range (exclusive), in the same forms as `since`.
    #[param(min_length = 1)]
    pub until: Option<String>,
    /// Source address or network (`10.0.0.5`, `10.0.0.0/24`, `fd00::/64`).
    #[param(min_length = 1, example = "10.0.0.0/24")]
    pub src: Option<String>,
    /// Destination address or network.
    #[param(min_length = 1)]
    pub dst: Option<String>,
    /// Address or network on either side.
    #[param(min_length = 1)]
    pub host: Option<String>,
    /// Port on either side.
    #[param(value_type = Option<u16>, minimum = 0, maximum = 65535)]
    pub port: Option<String>,
    /// L4 (`tcp`, `udp`, `icmp`, ...) or L7 (`dns`, `http`, `tls`) protocol.
    #[param(pattern = "^[A-Za-z0-9-]{1,16}$", example = "tcp")]
    pub protocol: Option<String>,
    /// An endpoint in this namespace at the packet's time (either side).
    #[param(min_length = 1, max_length = 63, example = "shop")]
    pub namespace: Option<String>,
    /// An endpoint that was this pod: `name` or `namespace/name`.
    #[param(min_length = 1, max_length = 317, example = "shop/checkout-7d9f8-x2x7q")]
    pub pod: Option<String>,
    /// An endpoint of this workload (Deployment, StatefulSet, DaemonSet, Job, CronJob): `name`
    /// or `namespace/name`.
    #[param(min_length = 1, max_length = 317, example = "shop/checkout")]
    pub workload: Option<String>,
    /// An endpoint that was this Service's ClusterIP: `name` or `namespace/name`.
    #[param(min_length = 1, max_length = 317, example = "shop/checkout")]
    pub service: Option<String>,
    /// Filter expression, e.g. `tcp and port 443 and not host 10.0.0.5`; empty counts as absent.
    #[param(max_length = 2048)]
    pub q: Option<String>,
}

impl FilterParams {
    pub fn check(&self) -> Result<Filter, ApiError> {
        let mut filter = Filter {
            session: self.session.as_deref().map(check_session).transpose()?,
            sessions: None,
            since: self.since.as_deref().map(|t| parse_time("since", t)).transpose()?,
            until: self.until.as_deref().map(|t| parse_time("until", t)).transpose()?,
            conditions: Vec::new(),
        };
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(ApiError::bad("until", "must be later than since"));
        }
        let network = |parameter: &'static str, value: &str| {
            Network::parse(value.trim()).map_err(|message| ApiError::bad(parameter, message))
        };
        if let Some(src) = &self.src {
            filter.conditions.push(Expr::Host(Side::Src, network("src", src)?));
        }
        if let Some(dst) = &self.dst {
            filter.conditions.push(Expr::Host(Side::Dst, network("dst", dst)?));
        }
        if let Some(host) = &self.host {
            filter.conditions.push(Expr::Host(Side::Either, network("host", host)?));
        }
        if let Some(port) = &self.port {
            let port = parse_port(port).map_err(|m| ApiError::bad("port", m))?;
            filter.conditions.push(Expr::Port(Side::Either, port));
        }
        if let Some(protocol) = &self.protocol {
            let protocol = check_protocol(protocol).map_err(|m| ApiError::bad("protocol", m))?;
            filter.conditions.push(Expr::Protocol(protocol));
        }
        for (parameter, kind, value) in [
            ("namespace", NameKind::Namespace, &self.namespace),
            ("pod", NameKind::Pod, &self.pod),
            ("workload", NameKind::Workload, &self.workload),
            ("service", NameKind::Service, &self.service),
        ] {
            if let Some(value) = value {
                let name = ObjectName::parse(kind, value).map_err(|m| ApiError::bad(parameter, m))?;
                filter.conditions.push(Expr::Named(Side::Either, kind, name));
            }
        }
        if let Some(q) = self.q.as_deref() {
            // The length bound holds for blank text too (schemathesis found 2049 tabs accepted).
            let length = q.chars().count();
            if length > super::expr::MAX_LENGTH {
                return Err(ApiError::bad(
                    "q",
                    format!(
                        "is {length} characters long; at most {} are allowed",
                        super::expr::MAX_LENGTH
                    ),
                ));
            }
            if !q.trim().is_empty() {
                filter
                    .conditions
                    .push(parse_expression(q).map_err(|m| ApiError::bad("q", m))?);
            }
        }
        Ok(filter)
    }
}

fn check_session(session: &str) -> Result<String, ApiError> {
    match session.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(session.to_owned())
        }
        _ => Err(ApiError::bad(
            "session",
            format!("{session:?} is not of the form namespace/name"),
        )),
    }
}

/// An RFC 3339 time, or a duration before now (`90s`, `15m`, `2h`).
pub fn parse_time(parameter: &'static str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    let time = parse_unchecked_time(parameter, text)?;
    // PostgreSQL's timestamps end where chrono's do not; years outside 1..=9999 are no one's data.
    use chrono::Datelike;
    if !(1..=9999).contains(&time.year()) {
        return Err(ApiError::bad(parameter, "must lie between the years 1 and 9999"));
    }
    Ok(time)
}

fn parse_unchecked_time(parameter: &'static str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(time.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text.trim()).map_err(|_| {
        ApiError::bad(
            parameter,
            format!("{text:?} is neither an RFC 3339 time (2026-11-27T10:00:00Z) nor a duration ago (15m)"),
        )
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| ApiError::bad(parameter, "duration too long"))?;
    Utc::now()
        .checked_sub_signed(ago)
        .ok_or_else(|| ApiError::bad(parameter, "duration too long"))
}
