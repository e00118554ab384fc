//! AMQP 0-9-1, RabbitMQ's protocol and Trawl's own pipeline's: recognised by content on any TCP
//! port (the protocol header `AMQP\0\0\x09\x01`, or a run of whole frames: type, channel, size,
//! payload and the frame-end octet 0xCE), and on its IANA port (5672) as the port's guess when a
//! packet starts mid-frame. Each packet's whole frames are read: a method's class and name, the
//! exchange, routing key and queue it names, a content header's type, a close's reply. Summarised
//! as Wireshark's Info column does (`Basic.Publish x=trawl.packets rk=q Content-Header
//! type=application/vnd.trawl.batch Content-Body`).
//!
//! Not yet: pairing a method with its `-Ok` and its latency, publisher confirms and consumer acks
//! counted per channel (the requests table of issue #32), frames split over segments.

use super::{Cursor, Found, Framing, L7, Protocol, Recognition, Transport};
use crate::text;

pub(crate) const PORT: u16 = 5672;

const PROTOCOL_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";
const FRAME_END: u8 = 0xce;
/// Frames larger than this are not believed (RabbitMQ's default `frame_max` is 128 KiB; the
/// protocol allows 4 GiB, which one packet never holds).
const MAX_FRAME: usize = 1 << 20;

/// What one packet of an AMQP connection says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AmqpFrames {
    /// Each whole frame: `Basic.Publish`, `Content-Header`, `Content-Body`, `Heartbeat`, or
    /// `Protocol-Header` for a connection's first bytes.
    pub frames: Vec<String>,
    /// The first exchange a method names (`Basic.Publish`, `Basic.Deliver`, `Exchange.Declare`,
    /// `Queue.Bind`); the default exchange is the empty name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// The first routing key (or binding key) a method names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// The first queue a method names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// A content header's content type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// A `Connection.Close` or `Channel.Close`: its reply code and text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_text: Option<String>,
    /// What Wireshark's Info column says.
    #[serde(skip)]
    pub summary: String,
}

pub(crate) struct Amqp;

impl Protocol for Amqp {
    fn name(&self) -> &'static str {
        "amqp"
    }

    // Streams are not followed yet: each packet is read by itself (see the module's note).
    fn recognises_stream(&self, _first: &[u8], _src_port: u16, _dst_port: u16) -> Recognition {
        Recognition::No
    }

    fn frame(&self, _bytes: &[u8], _room: usize) -> Framing {
        Framing::Unframed
    }

    fn dissect(&self, transport: Transport, _src_port: u16, _dst_port: u16, payload: &[u8]) -> Found {
        if transport != Transport::Tcp {
            return Found::Nothing;
        }
        // A packet that starts mid-frame (a long body's next segment) is left to the port's guess.
        frames(payload).map_or(Found::Nothing, |frames| Found::Dissected(L7::Amqp(Box::new(frames))))
    }
}

/// The whole frames at the start of `payload`; None unless it starts with the protocol header or
/// a frame whose end octet is where its size says (a method frame of a known class besides).
fn frames(payload: &[u8]) -> Option<AmqpFrames> {
    let mut found = AmqpFrames {
        frames: Vec::new(),
        exchange: None,
        routing_key: None,
        queue: None,
        content_type: None,
        reply_code: None,
        reply_text: None,
        summary: String::new(),
    };
    let mut rest = payload;
    if rest.starts_with(b"AMQP") {
        let header = rest.get(..PROTOCOL_HEADER.len())?;
        found.frames.push("Protocol-Header".into());
        found
            .summary
            .push_str(&format!("Protocol-Header {}-{}-{} ", header[5], header[6], header[7]));
        rest = &rest[PROTOCOL_HEADER.len()..];
    }
    while rest.len() >= 8 {
        let kind = rest[0];
        let size = usize::try_from(u32::from_be_bytes(rest[3..7].try_into().ok()?)).ok()?;
        if size > MAX_FRAME || !matches!(kind, 1 | 2 | 3 | 8) {
            break;
        }
        let Some(end) = size.checked_add(7).filter(|end| rest.get(*end) == Some(&FRAME_END)) else {
            break;
        };
        let body = &rest[7..end];
        let read = match kind {
            1 => method(body, &mut found),
            2 => content_header(body, &mut found),
            3 => Some(("Content-Body".to_owned(), String::new())),
            _ => Some(("Heartbeat".to_owned(), String::new())),
        };
        let Some((name, arguments)) = read else { break };
        found.summary.push_str(&name);
        found.summary.push_str(&arguments);
        found.summary.push(' ');
        found.frames.push(name);
        rest = &rest[end + 1..];
    }
    (!found.frames.is_empty()).then_some(found)
}

/// A method frame's name and Info arguments; None for a class or method this protocol does not
/// have (not AMQP after all).
fn method(body: &[u8], found: &mut AmqpFrames) -> Option<(String, String)> {
    let mut cursor = Cursor(body);
    let (class, id) = (cursor.u16()?, cursor.u16()?);
    let name = method_name(class, id)?;
    let mut arguments = String::new();
    let short = |cursor: &mut Cursor<'_>| -> Option<String> {
        let len = usize::from(cursor.u8()?);
        Some(text::storable(String::from_utf8_lossy(cursor.take(len)?).into_owned()))
    };
    // The arguments Wireshark's Info shows, in its words: each as far as the frame holds it.
    match (class, id) {
        (10, 40) => {
            if let Some(vhost) = short(&mut cursor) {
                arguments = format!(" vhost={vhost}");
            }
        }
        (10, 50) | (20, 40) => {
            let code = cursor.u16();
            let reply = short(&mut cursor);
            found.reply_code = found.reply_code.or(code);
            if let Some(reply) = reply {
                arguments = format!(" reply={reply}");
                found.reply_text.get_or_insert(reply);
            }
        }
        // Exchange.Declare and Exchange.Delete: x.
        (40, 10 | 20) => {
            cursor.skip(2)?;
            let exchange = short(&mut cursor)?;
            arguments = format!(" x={exchange}");
            found.exchange.get_or_insert(exchange);
        }
        // Queue.Declare, Queue.Purge, Queue.Delete, Basic.Consume, Basic.Get: q.
        (50, 10 | 30 | 40) | (60, 20 | 70) => {
            cursor.skip(2)?;
            let queue = short(&mut cursor)?;
            arguments = format!(" q={queue}");
            found.queue.get_or_insert(queue);
        }
        (50, 11) => {
            let queue = short(&mut cursor)?;
            arguments = format!(" q={queue}");
            found.queue.get_or_insert(queue);
        }
        // Queue.Bind and Queue.Unbind: q, x, bk.
        (50, 20 | 50) => {
            cursor.skip(2)?;
            let (queue, exchange, key) = (short(&mut cursor)?, short(&mut cursor)?, short(&mut cursor)?);
            arguments = format!(" q={queue} x={exchange} bk={key}");
            found.queue.get_or_insert(queue);
            found.exchange.get_or_insert(exchange);
            found.routing_key.get_or_insert(key);
        }
        // Basic.Publish: x, rk.
        (60, 40) => {
            cursor.skip(2)?;
            let (exchange, key) = (short(&mut cursor)?, short(&mut cursor)?);
            arguments = format!(" x={exchange} rk={key}");
            found.exchange.get_or_insert(exchange);
            found.routing_key.get_or_insert(key);
        }
        // Basic.Return: reply code and text, x, rk; Basic.Deliver: consumer tag, delivery tag,
        // redelivered, x, rk; Basic.Get-Ok: delivery tag, redelivered, x, rk.
        (60, 50) => {
            found.reply_code = found.reply_code.or(cursor.u16());
            let reply = short(&mut cursor)?;
            let (exchange, key) = (short(&mut cursor)?, short(&mut cursor)?);
            arguments = format!(" reply={reply} x={exchange} rk={key}");
            found.reply_text.get_or_insert(reply);
            found.exchange.get_or_insert(exchange);
            found.routing_key.get_or_insert(key);
        }
        (60, 60 | 71) => {
            if id == 60 {
                short(&mut cursor)?;
            }
            cursor.skip(9)?;
            let (exchange, key) = (short(&mut cursor)?, short(&mut cursor)?);
            arguments = format!(" x={exchange} rk={key}");
            found.exchange.get_or_insert(exchange);
            found.routing_key.get_or_insert(key);
        }
        _ => {}
    }
    Some((name.to_owned(), arguments))
}

/// A content header's name and its content type, as Wireshark's Info shows it.
fn content_header(body: &[u8], found: &mut AmqpFrames) -> Option<(String, String)> {
    let mut cursor = Cursor(body);
    cursor.skip(2 + 2 + 8)?;
    let flags = cursor.u16()?;
    let mut arguments = String::new();
    if flags & 0x8000 != 0 {
        let len = usize::from(cursor.u8()?);
        let content_type = text::storable(String::from_utf8_lossy(cursor.take(len)?).into_owned());
        arguments = format!(" type={content_type}");
        found.content_type.get_or_insert(content_type);
    }
    Some(("Content-Header".to_owned(), arguments))
}

/// AMQP 0-9-1's methods (its XML specification), named as Wireshark names them.
fn method_name(class: u16, id: u16) -> Option<&'static str> {
    Some(match (class, id) {
        (10, 10) => "Connection.Start",
        (10, 11) => "Connection.Start-Ok",
        (10, 20) => "Connection.Secure",
        (10, 21) => "Connection.Secure-Ok",
        (10, 30) => "Connection.Tune",
        (10, 31) => "Connection.Tune-Ok",
        (10, 40) => "Connection.Open",
        (10, 41) => "Connection.Open-Ok",
        (10, 50) => "Connection.Close",
        (10, 51) => "Connection.Close-Ok",
        (10, 60) => "Connection.Blocked",
        (10, 61) => "Connection.Unblocked",
        (10, 70) => "Connection.Update-Secret",
        (10, 71) => "Connection.Update-Secret-Ok",
        (20, 10) => "Channel.Open",
        (20, 11) => "Channel.Open-Ok",
        (20, 20) => "Channel.Flow",
        (20, 21) => "Channel.Flow-Ok",
        (20, 40) => "Channel.Close",
        (20, 41) => "Channel.Close-Ok",
        (30, 10) => "Access.Request",
        (30, 11) => "Access.Request-Ok",
        (40, 10) => "Exchange.Declare",
        (40, 11) => "Exchange.Declare-Ok",
        (40, 20) => "Exchange.Delete",
        (40, 21) => "Exchange.Delete-Ok",
        (40, 30) => "Exchange.Bind",
        (40, 31) => "Exchange.Bind-Ok",
        (40, 40) => "Exchange.Unbind",
        (40, 51) => "Exchange.Unbind-Ok",
        (50, 10) => "Queue.Declare",
        (50, 11) => "Queue.Declare-Ok",
        (50, 20) => "Queue.Bind",
        (50, 21) => "Queue.Bind-Ok",
        (50, 30) => "Queue.Purge",
        (50, 31) => "Queue.Purge-Ok",
        (50, 40) => "Queue.Delete",
        (50, 41) => "Queue.Delete-Ok",
        (50, 50) => "Queue.Unbind",
        (50, 51) => "Queue.Unbind-Ok",
        (60, 10) => "Basic.Qos",
        (60, 11) => "Basic.Qos-Ok",
        (60, 20) => "Basic.Consume",
        (60, 21) => "Basic.Consume-Ok",
        (60, 30) => "Basic.Cancel",
        (60, 31) => "Basic.Cancel-Ok",
        (60, 40) => "Basic.Publish",
        (60, 50) => "Basic.Return",
        (60, 60) => "Basic.Deliver",
        (60, 70) => "Basic.Get",
        (60, 71) => "Basic.Get-Ok",
        (60, 72) => "Basic.Get-Empty",
        (60, 80) => "Basic.Ack",
        (60, 90) => "Basic.Reject",
        (60, 100) => "Basic.Recover-Async",
        (60, 110) => "Basic.Recover",
        (60, 111) => "Basic.Recover-Ok",
        (60, 120) => "Basic.Nack",
        (85, 10) => "Confirm.Select",
        (85, 11) => "Confirm.Select-Ok",
        (90, 10) => "Tx.Select",
        (90, 11) => "Tx.Select-Ok",
        (90, 20) => "Tx.Commit",
        (90, 21) => "Tx.Commit-Ok",
        (90, 30) => "Tx.Rollback",
        (90, 31) => "Tx.Rollback-Ok",
        _ => return None,
    })
}

pub(crate) fn info(frames: &AmqpFrames) -> Option<String> {
    Some(frames.summary.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, channel: u16, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![kind];
        bytes.extend(channel.to_be_bytes());
        bytes.extend((body.len() as u32).to_be_bytes());
        bytes.extend(body);
        bytes.push(FRAME_END);
        bytes
    }

    fn short(text: &str) -> Vec<u8> {
        [&[text.len() as u8][..], text.as_bytes()].concat()
    }

    fn read(payload: &[u8]) -> AmqpFrames {
        match Amqp.dissect(Transport::Tcp, 40000, 15672, payload) {
            Found::Dissected(L7::Amqp(frames)) => *frames,
            other => panic!("not AMQP: {other:?}"),
        }
    }

    #[test]
    fn a_publish_with_its_header_and_body_reads_as_wireshark_shows_it() {
        let publish = [&[0, 60, 0, 40, 0, 0][..], &short("trawl.packets"), &short("q.1"), &[0]].concat();
        let header = [
            &[0, 60, 0, 0][..],
            &5u64.to_be_bytes(),
            &[0x80, 0],
            &short("text/plain"),
        ]
        .concat();
        let payload = [frame(1, 1, &publish), frame(2, 1, &header), frame(3, 1, b"hello")].concat();
        let frames = read(&payload);
        assert_eq!(
            info(&frames).unwrap(),
            "Basic.Publish x=trawl.packets rk=q.1 Content-Header type=text/plain Content-Body "
        );
        assert_eq!(frames.exchange.as_deref(), Some("trawl.packets"));
        assert_eq!(frames.routing_key.as_deref(), Some("q.1"));
        assert_eq!(frames.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn the_protocol_header_and_a_close_with_its_reply() {
        let frames = read(PROTOCOL_HEADER);
        assert_eq!(frames.summary, "Protocol-Header 0-9-1 ");
        let close = [
            &[0, 20, 0, 40, 1, 0x94][..],
            &short("NOT_FOUND - no queue 'x'"),
            &[0, 50, 0, 20],
        ]
        .concat();
        let frames = read(&frame(1, 1, &close));
        assert_eq!(frames.summary, "Channel.Close reply=NOT_FOUND - no queue 'x' ");
        assert_eq!(frames.reply_code, Some(404));
    }

    #[test]
    fn what_is_not_whole_frames_is_not_amqp() {
        for payload in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            &[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, FRAME_END],
            &[1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 40, 0x00],
            &[3, 0, 1, 0xff, 0xff, 0xff, 0xff, 0],
        ] {
            assert_eq!(
                Amqp.dissect(Transport::Tcp, 40000, 5672, payload),
                Found::Nothing,
                "{payload:?}"
            );
        }
        assert_eq!(
            Amqp.dissect(Transport::Udp, 40000, 5672, PROTOCOL_HEADER),
            Found::Nothing
        );
    }

    #[test]
    fn a_frame_cut_short_keeps_the_frames_before_it() {
        let payload = [frame(8, 0, &[]), frame(3, 1, b"0123456789")[..9].to_vec()].concat();
        assert_eq!(read(&payload).frames, ["Heartbeat"]);
    }
}
