//! A checked [`Filter`] as SQL, with every value a bound parameter.

use sqlx::{Postgres, QueryBuilder};

use super::{Expr, Filter, NameKind, ObjectName, Side};

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
    /// Packets only: the tunnel's kind and outer addresses, which `protocol` and `host` also match.
    pub tunnel: Option<(&'static str, &'static str, &'static str)>,
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
    tunnel: Some(("tunnel", "outer_src", "outer_dst")),
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
    tunnel: None,
    first_time: "first_seen",
    last_time: "last_seen",
};

impl Filter {
    /// Appends ` AND ...` for every part of the filter; values only ever as bound parameters.
    pub(super) fn push_sql(&self, query: &mut QueryBuilder<Postgres>, columns: &Columns) {
        if let Some(session) = &self.session {
            query
                .push(format_args!(" AND {} = ", columns.session))
                .push_bind(session.clone());
        }
        if let Some(sessions) = &self.sessions {
            query
                .push(format_args!(" AND {} = ANY(", columns.session))
                .push_bind(sessions.clone())
                .push(")");
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
            let inside = |query: &mut QueryBuilder<Postgres>, column: &str| {
                query
                    .push(format_args!("{column} <<= "))
                    .push_bind(network.0.clone())
                    .push("::inet");
            };
            match columns.tunnel {
                // A tunnelled packet's own address or its tunnel's, on that side.
                Some((_, outer_src, outer_dst)) => {
                    query.push("(");
                    on_side(query, *side, columns.src, columns.dst, inside);
                    query.push(" OR ");
                    on_side(query, *side, outer_src, outer_dst, inside);
                    query.push(")");
                }
                None => on_side(query, *side, columns.src, columns.dst, inside),
            }
        }
        Expr::Port(side, port) => on_side(query, *side, columns.src_port, columns.dst_port, |query, column| {
            query.push(format_args!("{column} = ")).push_bind(i32::from(*port));
        }),
        Expr::Named(side, kind, name) => on_side(
            query,
            *side,
            (columns.src, columns.src_port),
            (columns.dst, columns.dst_port),
            |query, (address, port)| push_named(query, (address, port), columns.first_time, *kind, name),
        ),
        Expr::Protocol(name) => {
            query
                .push(format_args!("({} = ", columns.transport))
                .push_bind(name.clone())
                .push(format_args!(" OR {} = ", columns.l7))
                .push_bind(name.clone());
            if let Some((tunnel, _, _)) = columns.tunnel {
                query.push(format_args!(" OR {tunnel} = ")).push_bind(name.clone());
            }
            query.push(")");
        }
    }
}

/// Whether `address` was, at `time`, an endpoint of `kind` named `name` in the endpoint history
/// (`0011_endpoint_history.sql`): who held the address then, not who holds it now. A Service is
/// also the pod address and port that served it then (`0018_service_backends.sql`): traffic
/// through a Service is kept where it enters the backend, with the pod's address.
fn push_named(
    query: &mut QueryBuilder<Postgres>,
    (address, port): (&str, &str),
    time: &str,
    kind: NameKind,
    name: &ObjectName,
) {
    if kind == NameKind::Service {
        query.push("(");
    }
    query.push(format_args!(
        "EXISTS (SELECT FROM endpoint_history e WHERE e.address = {address} AND e.since <= {time} \
         AND (e.until IS NULL OR e.until > {time})"
    ));
    if let Some(namespace) = &name.namespace {
        query.push(" AND e.namespace = ").push_bind(namespace.clone());
    }
    if let Some(object) = &name.name {
        match kind {
            NameKind::Namespace => {}
            NameKind::Pod => {
                query
                    .push(" AND e.kind = 'pod' AND e.name = ")
                    .push_bind(object.clone());
            }
            NameKind::Service => {
                query
                    .push(" AND e.kind = 'service' AND e.name = ")
                    .push_bind(object.clone());
            }
            NameKind::Workload => {
                query.push(" AND e.workload = ").push_bind(object.clone());
            }
        }
    }
    query.push(")");
    if kind == NameKind::Service {
        query.push(format_args!(
            " OR EXISTS (SELECT FROM service_backends b WHERE b.address = {address} AND b.port = {port} \
             AND b.since <= {time} AND (b.until IS NULL OR b.until > {time})"
        ));
        if let Some(namespace) = &name.namespace {
            query.push(" AND b.namespace = ").push_bind(namespace.clone());
        }
        if let Some(object) = &name.name {
            query.push(" AND b.service = ").push_bind(object.clone());
        }
        query.push("))");
    }
}

/// `condition` on the source's column, the destination's, or either (OR-ed in parentheses).
fn on_side<Column: Copy>(
    query: &mut QueryBuilder<Postgres>,
    side: Side,
    src: Column,
    dst: Column,
    condition: impl Fn(&mut QueryBuilder<Postgres>, Column),
) {
    match side {
        Side::Src => condition(query, src),
        Side::Dst => condition(query, dst),
        Side::Either => {
            query.push("(");
            condition(query, src);
            query.push(" OR ");
            condition(query, dst);
            query.push(")");
        }
    }
}
