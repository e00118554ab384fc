//! The filters every data route shares (`session`, `since`, `until`, `src`, `dst`, `host`, `port`,
//! `protocol`, `q`), checked into typed values and turned into SQL with bound parameters only.
//!
//! `q` is a small tcpdump-like expression:
//! `expr := term ("or" term)*`, `term := factor ("and" factor)*`, `factor := "not" factor | "(" expr ")" | primitive`,
//! primitives: `host|src|dst ADDR[/PREFIX]`, `port|src port|dst port N`, or a protocol name
//! (`tcp`, `udp`, `icmp`, `dns`, `http`, `tls`, ...). Written by hand rather than with a parser
//! library: the grammar has four rules, and the errors name the position and what was expected.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::{Postgres, QueryBuilder};
use utoipa::IntoParams;

use crate::error::ApiError;

/// Filters shared by `/packets`, `/flows`, `/stats`, the pcap export and the live stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterParams {
    /// Session as `namespace/name`.
    pub session: Option<String>,
    /// Start of the time range: RFC 3339 (`2026-11-27T10:00:00Z`) or a duration ago (`15m`).
    pub since: Option<String>,
    /// End of the time range (exclusive), in the same forms as `since`.
    pub until: Option<String>,
    /// Source address or network (`10.0.0.5`, `10.0.0.0/24`).
    pub src: Option<String>,
    /// Destination address or network.
    pub dst: Option<String>,
    /// Address or network on either side.
    pub host: Option<String>,
    /// Port on either side.
    pub port: Option<String>,
    /// L4 (`tcp`, `udp`, `icmp`, ...) or L7 (`dns`, `http`, `tls`) protocol.
    pub protocol: Option<String>,
    /// Filter expression, e.g. `tcp and port 443 and not host 10.0.0.5`.
    pub q: Option<String>,
}

/// A checked filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// All must hold.
    pub conditions: Vec<Expr>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Host(Side, Network),
    Port(Side, u16),
    Protocol(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
    Either,
}

/// An address or a network in CIDR notation, kept as checked text for an `inet` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network(String);

impl Network {
    fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or network (10.0.0.5, 10.0.0.0/24, fd00::/64)"))?;
        if let Some(prefix) = prefix {
            let max = if address.is_ipv4() { 32 } else { 128 };
            match prefix.parse::<u8>() {
                Ok(bits) if bits <= max => {}
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            }
        }
        Ok(Self(text.to_owned()))
    }
}

impl FilterParams {
    pub fn check(&self) -> Result<Filter, ApiError> {
        let mut filter = Filter {
            session: self.session.as_deref().map(check_session).transpose()?,
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
            let port = parse_port(port.trim()).map_err(|m| ApiError::bad("port", m))?;
            filter.conditions.push(Expr::Port(Side::Either, port));
        }
        if let Some(protocol) = &self.protocol {
            let protocol = check_protocol(protocol.trim()).map_err(|m| ApiError::bad("protocol", m))?;
            filter.conditions.push(Expr::Protocol(protocol));
        }
        if let Some(q) = self.q.as_deref().filter(|q| !q.trim().is_empty()) {
            filter
                .conditions
                .push(parse_expression(q).map_err(|m| ApiError::bad("q", m))?);
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

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("{text:?} is not a port number (0-65535)"))
}

fn check_protocol(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && text.len() <= 16 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a protocol name (tcp, udp, icmp, dns, http, tls, ...)"
        ))
    }
}

/// Parses a `q` expression. Errors say where and what was expected.
pub fn parse_expression(text: &str) -> Result<Expr, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.expr()?;
    match parser.peek() {
        None => Ok(expr),
        Some(token) => Err(format!(
            "unexpected {:?} at position {}; expected `and`, `or` or the end",
            token.text, token.position
        )),
    }
}

#[derive(Debug, Clone)]
struct Token {
    text: String,
    /// 1-based character position, for error messages.
    position: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            tokens.push(Token {
                text: c.to_string(),
                position: i + 1,
            });
            chars.next();
        } else if c.is_ascii_alphanumeric() || ".:/-_".contains(c) {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_ascii_alphanumeric() || ".:/-_".contains(c) {
                    word.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            tokens.push(Token {
                text: word,
                position: i + 1,
            });
        } else {
            return Err(format!("unexpected character {c:?} at position {}", i + 1));
        }
    }
    if tokens.is_empty() {
        return Err("empty expression".into());
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.text.eq_ignore_ascii_case(word))
    }

    fn next(&mut self, expected: &str) -> Result<Token, String> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| format!("the expression ends where {expected} was expected"))?;
        self.at += 1;
        Ok(token)
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.peek_is("or") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while self.peek_is("and") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        let token = self.next("a filter (host, port, a protocol, not, or a parenthesis)")?;
        let word = token.text.to_ascii_lowercase();
        match word.as_str() {
            "not" => Ok(Expr::Not(Box::new(self.factor()?))),
            "(" => {
                let inner = self.expr()?;
                let close = self.next("`)`")?;
                if close.text != ")" {
                    return Err(format!(
                        "expected `)` at position {}, found {:?}",
                        close.position, close.text
                    ));
                }
                Ok(inner)
            }
            "host" => Ok(Expr::Host(Side::Either, self.network()?)),
            "port" => Ok(Expr::Port(Side::Either, self.port()?)),
            "src" | "dst" => {
                let side = if word == "src" { Side::Src } else { Side::Dst };
                if self.peek_is("port") {
                    self.at += 1;
                    Ok(Expr::Port(side, self.port()?))
                } else {
                    if self.peek_is("host") {
                        self.at += 1;
                    }
                    Ok(Expr::Host(side, self.network()?))
                }
            }
            "and" | "or" | ")" => Err(format!(
                "unexpected {:?} at position {}; expected a filter",
                token.text, token.position
            )),
            _ => check_protocol(&word)
                .map(Expr::Protocol)
                .map_err(|message| format!("at position {}: {message}", token.position)),
        }
    }

    fn network(&mut self) -> Result<Network, String> {
        let token = self.next("an address")?;
        Network::parse(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }

    fn port(&mut self) -> Result<u16, String> {
        let token = self.next("a port number")?;
        parse_port(&token.text).map_err(|message| format!("at position {}: {message}", token.position))
    }
}

/// How a table names what the filters look at. Flows store each conversation once (endpoint `a`
/// is the lower address), so their source is whichever endpoint initiated it.
pub struct Columns {
    pub session: &'static str,
    pub src: &'static str,
    pub dst: &'static str,
    pub src_port: &'static str,
    pub dst_port: &'static str,
    pub transport: &'static str,
    pub l7: &'static str,
    /// The time range applies as `first <= until` and `last >= since`.
    pub first_time: &'static str,
    pub last_time: &'static str,
}

pub const PACKETS: Columns = Columns {
    session: "session",
    src: "src",
    dst: "dst",
    src_port: "src_port",
    dst_port: "dst_port",
    transport: "transport",
    l7: "l7",
    first_time: "ts",
    last_time: "ts",
};

pub const FLOWS: Columns = Columns {
    session: "session",
    src: "(CASE WHEN initiator = 'a' THEN a_addr ELSE b_addr END)",
    dst: "(CASE WHEN initiator = 'a' THEN b_addr ELSE a_addr END)",
    src_port: "(CASE WHEN initiator = 'a' THEN a_port ELSE b_port END)",
    dst_port: "(CASE WHEN initiator = 'a' THEN b_port ELSE a_port END)",
    transport: "transport",
    l7: "l7",
    first_time: "first_seen",
    last_time: "last_seen",
};

impl Filter {
    /// Appends ` AND ...` for every part of the filter; values only ever as bound parameters.
    pub fn push_sql(&self, query: &mut QueryBuilder<Postgres>, columns: &Columns) {
        if let Some(session) = &self.session {
            query
                .push(format_args!(" AND {} = ", columns.session))
                .push_bind(session.clone());
        }
        if let Some(since) = self.since {
            query
                .push(format_args!(" AND {} >= ", columns.last_time))
                .push_bind(since);
        }
        if let Some(until) = self.until {
            query
                .push(format_args!(" AND {} < ", columns.first_time))
                .push_bind(until);
        }
        for condition in &self.conditions {
            query.push(" AND ");
            push_expr(query, condition, columns);
        }
    }
}

fn push_expr(query: &mut QueryBuilder<Postgres>, expr: &Expr, columns: &Columns) {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            let joiner = if matches!(expr, Expr::And(..)) { " AND " } else { " OR " };
            query.push("(");
            push_expr(query, a, columns);
            query.push(joiner);
            push_expr(query, b, columns);
            query.push(")");
        }
        Expr::Not(inner) => {
            // NULL (a packet without addresses or ports) must count as "not matching".
            query.push("(NOT coalesce(");
            push_expr(query, inner, columns);
            query.push(", false))");
        }
        Expr::Host(side, network) => {
            let one = |query: &mut QueryBuilder<Postgres>, column: &str| {
                query
                    .push(format_args!("{column} <<= "))
                    .push_bind(network.0.clone())
                    .push("::inet");
            };
            match side {
                Side::Src => one(query, columns.src),
                Side::Dst => one(query, columns.dst),
                Side::Either => {
                    query.push("(");
                    one(query, columns.src);
                    query.push(" OR ");
                    one(query, columns.dst);
                    query.push(")");
                }
            }
        }
        Expr::Port(side, port) => {
            let port = i32::from(*port);
            match side {
                Side::Src => {
                    query.push(format_args!("{} = ", columns.src_port)).push_bind(port);
                }
                Side::Dst => {
                    query.push(format_args!("{} = ", columns.dst_port)).push_bind(port);
                }
                Side::Either => {
                    query
                        .push(format_args!("({} = ", columns.src_port))
                        .push_bind(port)
                        .push(format_args!(" OR {} = ", columns.dst_port))
                        .push_bind(port)
                        .push(")");
                }
            }
        }
        Expr::Protocol(name) => {
            query
                .push(format_args!("({} = ", columns.transport))
                .push_bind(name.clone())
                .push(format_args!(" OR {} = ", columns.l7))
                .push_bind(name.clone())
                .push(")");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
