//! PostgreSQL's frontend/backend protocol (version 3): recognised on its IANA port (5432, as
//! Wireshark's pgsql dissector is) when the payload is a run of well-formed messages, each
//! dissected as far as the packet holds it; the side on port 5432 is the server. A packet that
//! does not start with a message (the middle of a long result) is the port's guess. Summarised as
//! Wireshark's Info column does: the direction (`>` to the server, `<` from it) and each
//! message's type letter, `<T/D/C/Z`.
//!
//! Not yet: pairing each query with its result across packets (the requests table of issue #32),
//! and messages split over segments (Wireshark reassembles them; a packet here shows the
//! messages it holds whole).

use super::{Cursor, Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

pub(crate) const PORT: u16 = 5432;

/// Statement texts longer than this are cut (a row holds at most this much of one).
const MAX_STATEMENT: usize = 1024;

/// What one packet of a PostgreSQL connection says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PostgresMessages {
    /// Sent to the server (the frontend's messages) rather than by it.
    pub frontend: bool,
    /// Each whole message's type letter, in order; empty for the untyped first message of a
    /// connection (startup, SSL or GSS encryption request, cancel).
    pub types: Vec<char>,
    /// What the untyped first message asked: `startup`, `ssl`, `gssenc` or `cancel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opening: Option<&'static str>,
    /// The startup message's `user` and `database`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The first statement: a simple Query's text, or a Parse message's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// The first CommandComplete's tag (`SELECT 1`, `INSERT 0 5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_tag: Option<String>,
    /// The first ErrorResponse's SQLSTATE and message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub(crate) struct Postgres;

impl Protocol for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    // Streams are not followed yet: each packet is read by itself (see the module's note).
    fn recognises_stream(&self, _first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        Recognition::No
    }

    fn frame(&self, _bytes: &[u8], _room: usize) -> Framing {
        Framing::Unframed
    }

    fn dissect(&self, transport: Transport, src_port: u16, dst_port: u16, payload: &[u8]) -> Found {
        if transport != Transport::Tcp || (src_port != PORT && dst_port != PORT) {
            return Found::Nothing;
        }
        // Both ends on 5432: the lower ephemeral rule does not apply; the destination serves.
        let frontend = dst_port == PORT;
        // A packet that does not start with a message may continue a long one (a big result
        // spans segments): not an error, the port's guess.
        messages(payload, frontend).map_or(Found::Nothing, |messages| {
            Found::Dissected(L7::Postgres(Box::new(messages)))
        })
    }
}

/// Message types each side sends (PostgreSQL's protocol, "Message Formats").
const FRONTEND_TYPES: &[u8] = b"BCcDdEFfHPpQSX";
const BACKEND_TYPES: &[u8] = b"123AcCDdEGHIKNnRSsTtVWZ";

/// Untyped first messages: a length, then one of these codes.
const STARTUP_V3: u32 = 196_608;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// The whole messages at the start of `payload`; `None` when the first is not a message of this
/// side (a packet that starts mid-message of a long one is not read).
fn messages(payload: &[u8], frontend: bool) -> Option<PostgresMessages> {
    let mut found = PostgresMessages {
        frontend,
        types: Vec::new(),
        opening: None,
        user: None,
        database: None,
        statement: None,
        command_tag: None,
        sqlstate: None,
        error: None,
    };
    let mut rest = payload;
    if frontend && rest.first() == Some(&0) {
        let len = usize::try_from(u32::from_be_bytes(rest.get(..4)?.try_into().ok()?)).ok()?;
        let body = rest.get(4..len)?;
        read_opening(body, &mut found)?;
        rest = &rest[len..];
    }
    let valid = if frontend { FRONTEND_TYPES } else { BACKEND_TYPES };
    while rest.len() >= 5 {
        let kind = rest[0];
        if !valid.contains(&kind) {
            break;
        }
        let len = usize::try_from(u32::from_be_bytes(rest[1..5].try_into().ok()?)).ok()?;
        if len < 4 {
            break;
        }
        let Some(end) = len.checked_add(1).filter(|end| *end <= rest.len()) else {
            // The message continues in the next segment.
            break;
        };
        read_body(kind, &rest[5..end], frontend, &mut found);
        found.types.push(char::from(kind));
        rest = &rest[end..];
    }
    (found.opening.is_some() || !found.types.is_empty()).then_some(found)
}

fn read_opening(body: &[u8], found: &mut PostgresMessages) -> Option<()> {
    let mut cursor = Cursor(body);
    let code = u32::from_be_bytes(cursor.take(4)?.try_into().ok()?);
    found.opening = Some(match code {
        STARTUP_V3 => "startup",
        SSL_REQUEST => "ssl",
        GSSENC_REQUEST => "gssenc",
        CANCEL_REQUEST => "cancel",
        _ => return None,
    });
    if code == STARTUP_V3 {
        // Parameter names and values, each NUL-terminated, then one more NUL.
        let mut fields = cursor.0.split(|b| *b == 0);
        while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
            match name {
                b"user" => found.user = Some(text::from_wire(value)),
                b"database" => found.database = Some(text::from_wire(value)),
                _ => {}
            }
        }
    }
    Some(())
}

fn read_body(kind: u8, body: &[u8], frontend: bool, found: &mut PostgresMessages) {
    let until_nul = |bytes: &[u8]| bytes.split(|b| *b == 0).next().unwrap_or_default().to_vec();
    match (frontend, kind) {
        (true, b'Q') if found.statement.is_none() => found.statement = Some(statement(&until_nul(body))),
        // Parse: the statement's name, then its text.
        (true, b'P') if found.statement.is_none() => {
            let mut fields = body.splitn(3, |b| *b == 0);
            let _name = fields.next();
            if let Some(query) = fields.next() {
                found.statement = Some(statement(query));
            }
        }
        (false, b'C') if found.command_tag.is_none() => found.command_tag = Some(text::from_wire(&until_nul(body))),
        // ErrorResponse: fields of a code byte and a NUL-terminated value.
        (false, b'E') if found.sqlstate.is_none() => {
            for field in body.split(|b| *b == 0) {
                match field.split_first() {
                    Some((b'C', code)) => found.sqlstate = Some(text::from_wire(code)),
                    Some((b'M', message)) => found.error = Some(text::from_wire(message)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn statement(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_STATEMENT)];
    text::from_wire(cut)
}

/// Wireshark's Info: `>` or `<`, then each message's type letter, `/`-separated.
pub(crate) fn info(messages: &PostgresMessages) -> Option<String> {
    let direction = if messages.frontend { '>' } else { '<' };
    let types: Vec<String> = messages.types.iter().map(char::to_string).collect();
    Some(format!("{direction}{}", types.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        bytes.extend_from_slice(body);
        bytes
    }

    fn dissect(payload: &[u8], to_server: bool) -> Found {
        let (src, dst) = if to_server { (40000, PORT) } else { (PORT, 40000) };
        Postgres.dissect(Transport::Tcp, src, dst, payload)
    }

    fn read(payload: &[u8], to_server: bool) -> PostgresMessages {
        match dissect(payload, to_server) {
            Found::Dissected(L7::Postgres(messages)) => *messages,
            other => panic!("not PostgreSQL: {other:?}"),
        }
    }

    #[test]
    fn a_startup_message_names_its_user_and_database() {
        let mut body = STARTUP_V3.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0alice\0database\0shop\0application_name\0psql\0\0");
        let mut payload = u32::try_from(body.len() + 4).unwrap().to_be_bytes().to_vec();
        payload.extend_from_slice(&body);
        let found = read(&payload, true);
        assert_eq!(found.opening, Some("startup"));
        assert_eq!(
            (found.user.as_deref(), found.database.as_deref()),
            (Some("alice"), Some("shop"))
        );
        assert_eq!(info(&found).as_deref(), Some(">"));
        // The packet detail's layer is titled as the protocol is named everywhere else.
        let layer = serde_json::to_value(L7::Postgres(Box::new(found))).unwrap();
        assert_eq!(layer["protocol"], "postgresql");
    }

    #[test]
    fn a_query_and_its_result_read_as_wireshark_shows_them() {
        let query = read(&message(b'Q', b"select 1\0"), true);
        assert_eq!(query.statement.as_deref(), Some("select 1"));
        assert_eq!(info(&query).as_deref(), Some(">Q"));
        let mut result = message(b'T', &[0, 0]);
        result.extend(message(b'D', &[0, 1, 0, 0, 0, 1, b'1']));
        result.extend(message(b'C', b"SELECT 1\0"));
        result.extend(message(b'Z', b"I"));
        let result = read(&result, false);
        assert_eq!(result.command_tag.as_deref(), Some("SELECT 1"));
        assert_eq!(info(&result).as_deref(), Some("<T/D/C/Z"));
    }

    #[test]
    fn an_error_carries_its_sqlstate() {
        let error = read(
            &message(b'E', b"SERROR\0C42703\0Mcolumn \"nope\" does not exist\0\0"),
            false,
        );
        assert_eq!(error.sqlstate.as_deref(), Some("42703"));
        assert_eq!(error.error.as_deref(), Some("column \"nope\" does not exist"));
    }

    #[test]
    fn the_extended_protocol_names_the_parsed_statement() {
        let mut payload = message(b'P', b"\0select $1\0\0\0");
        payload.extend(message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
        payload.extend(message(b'E', &[0, 0, 0, 0, 0]));
        payload.extend(message(b'S', b""));
        let found = read(&payload, true);
        assert_eq!(found.statement.as_deref(), Some("select $1"));
        assert_eq!(info(&found).as_deref(), Some(">P/B/E/S"));
    }

    #[test]
    fn a_message_cut_by_the_segment_ends_the_packet_and_other_bytes_are_left_to_the_port() {
        let mut payload = message(b'Z', b"I");
        payload.extend(&message(b'D', &[0; 100])[..20]);
        assert_eq!(read(&payload, false).types, ['Z']);
        // The middle of a long DataRow, or bytes that are not PostgreSQL: the port's guess.
        assert_eq!(dissect(&[0x41; 40], false), Found::Nothing);
        assert_eq!(dissect(&[b'Q', 0xff, 0xff, 0xff, 0xff], true), Found::Nothing);
        assert_eq!(dissect(&[0, 0, 0, 2], true), Found::Nothing);
        assert!(matches!(
            crate::protocols::dissect(Transport::Tcp, 40000, PORT, &[0x41; 40]),
            Found::Dissected(L7::Guess { .. })
        ));
        assert!(matches!(
            Postgres.dissect(Transport::Tcp, 40000, 40001, &message(b'Q', b"x\0")),
            Found::Nothing
        ));
    }

    #[test]
    fn statements_are_cut_and_made_storable() {
        let mut long = vec![b'x'; 5000];
        long.push(0);
        assert_eq!(
            read(&message(b'Q', &long), true).statement.unwrap().len(),
            MAX_STATEMENT
        );
        let odd = read(&message(b'P', b"\0select '\xff'\0\0\0"), true);
        assert!(!odd.statement.unwrap().contains('\0'));
    }
}
