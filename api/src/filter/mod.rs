//! The filters every data route shares (`session`, `since`, `until`, `src`, `dst`, `host`, `port`,
//! `protocol`, `q`), checked into typed values and turned into SQL with bound parameters only.
//!
//! `q` is a small tcpdump-like expression:
//! `expr := term ("or" term)*`, `term := factor ("and" factor)*`, `factor := "not" factor | "(" expr ")" | primitive`,
//! primitives: `host|src|dst ADDR[/PREFIX]`, `port|src port|dst port N`, or a protocol name
//! (`tcp`, `udp`, `icmp`, `dns`, `http`, `tls`, ...), and by what an endpoint was at the packet's
//! time: `[src|dst] namespace NS`, `[src|dst] pod|workload|service [NS/]NAME`. Written by hand rather than with a parser
//! library: the grammar has four rules, and the errors name the position and what was expected.
//!
//! Split by job: [`params`] checks the query parameters, [`values`] the values conditions take,
//! [`expr`] parses `q`, [`sql`] renders a checked filter as SQL, and [`access`] narrows it to what
//! the caller may see, the only way to that SQL.

mod access;
mod expr;
mod params;
mod sql;
mod values;

use chrono::{DateTime, Utc};

pub use access::Narrowed;
pub use expr::{Expr, Side, parse_expression};
pub use params::{FilterParams, parse_time};
pub use sql::{Columns, FLOWS, PACKETS};
pub use values::{NameKind, Network, ObjectName};

/// A checked filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    /// Only these sessions (`namespace/name`): what the caller may see, when that is not all.
    pub sessions: Option<Vec<String>>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// All must hold.
    pub conditions: Vec<Expr>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;
    use sqlx::QueryBuilder;

    #[test]
    fn expressions_parse_with_precedence() {
        let expr = parse_expression("tcp and port 443 or not host 10.0.0.0/8").unwrap();
        let expected = Expr::Or(
            Box::new(Expr::And(
                Box::new(Expr::Protocol("tcp".into())),
                Box::new(Expr::Port(Side::Either, 443)),
            )),
            Box::new(Expr::Not(Box::new(Expr::Host(
                Side::Either,
                Network("10.0.0.0/8".into()),
            )))),
        );
        assert_eq!(expr, expected);
        assert_eq!(parse_expression("src port 53").unwrap(), Expr::Port(Side::Src, 53));
        assert_eq!(
            parse_expression("dst host fd00::1").unwrap(),
            Expr::Host(Side::Dst, Network("fd00::1".into()))
        );
        assert!(matches!(
            parse_expression("(dns or tls) and src 10.0.0.1").unwrap(),
            Expr::And(..)
        ));
    }

    #[test]
    fn bad_expressions_say_where_and_what() {
        for (q, expected) in [
            ("tcp and", "ends where a filter"),
            ("port http", "position 6"),
            ("host 10.0.0.300", "not an IP address"),
            ("host 10.0.0.0/40", "prefix length"),
            ("(tcp or udp", "`)`"),
            ("tcp udp", "unexpected \"udp\" at position 5"),
            ("tcp; drop table packets", "unexpected character ';'"),
            ("", "empty"),
        ] {
            let error = parse_expression(q).unwrap_err();
            assert!(error.contains(expected), "{q:?}: {error}");
        }
    }

    #[test]
    fn sql_binds_every_value() {
        let params = FilterParams {
            session: Some("default/web".into()),
            q: Some("host 10.0.0.5 and not port 22".into()),
            ..Default::default()
        };
        let filter = params.check().unwrap();
        let mut query = QueryBuilder::new("SELECT 1 FROM packets WHERE true");
        filter.push_sql(&mut query, &PACKETS);
        let sql = query.sql().as_str().to_owned();
        assert!(!sql.contains("10.0.0.5") && !sql.contains("default/web"), "{sql}");
        assert!(sql.contains("$1") && sql.contains("$5"), "{sql}");
    }

    #[test]
    fn blank_q_counts_as_absent_but_not_past_its_length_bound() {
        let blank = FilterParams {
            q: Some(" \t ".into()),
            ..Default::default()
        };
        assert!(blank.check().unwrap().conditions.is_empty());
        let long = FilterParams {
            q: Some("\t".repeat(2049)),
            ..Default::default()
        };
        assert!(matches!(
            long.check(),
            Err(ApiError::BadParameter { parameter: "q", .. })
        ));
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert!(parse_time("since", "2026-11-27T10:00:00Z").is_ok());
        let ago = parse_time("since", "15m").unwrap();
        assert!((Utc::now() - ago).num_seconds() >= 899);
        assert!(matches!(
            parse_time("since", "yesterday"),
            Err(ApiError::BadParameter { parameter: "since", .. })
        ));
    }
}
