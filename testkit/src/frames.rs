//! Ethernet frames for tests, built with pnet's packet types: IPv4 from 192.0.2.2 to 192.0.2.1
//! (TEST-NET-1, never routed) between the two ends of a [`crate::netns::TestNetwork`].

use pnet::packet::MutablePacket;
use pnet::packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet::packet::ip::{IpNextHeaderProtocol, IpNextHeaderProtocols};
use pnet::packet::ipv4::{self, MutableIpv4Packet};
use pnet::packet::tcp::{MutableTcpPacket, TcpFlags};
use pnet::packet::udp::MutableUdpPacket;
use pnet::util::MacAddr;
use std::net::Ipv4Addr;

pub const SOURCE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const DESTINATION: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn frame(from: [u8; 6], to: [u8; 6], protocol: IpNextHeaderProtocol, transport: &[u8]) -> Vec<u8> {
    frame_between(from, to, SOURCE, DESTINATION, protocol, transport)
}

/// An IPv4 frame from `source` to `destination` carrying `transport` (a complete transport segment).
pub fn frame_between(
    from: [u8; 6],
    to: [u8; 6],
    source: Ipv4Addr,
    destination: Ipv4Addr,
    protocol: IpNextHeaderProtocol,
    transport: &[u8],
) -> Vec<u8> {
    let mut bytes = vec![0u8; 14 + 20 + transport.len()];
    let mut ethernet = MutableEthernetPacket::new(&mut bytes).unwrap();
    ethernet.set_source(MacAddr::from(from));
    ethernet.set_destination(MacAddr::from(to));
    ethernet.set_ethertype(EtherTypes::Ipv4);
    let mut ip = MutableIpv4Packet::new(ethernet.payload_mut()).unwrap();
    ip.set_version(4);
    ip.set_header_length(5);
    ip.set_total_length((20 + transport.len()) as u16);
    ip.set_ttl(64);
    ip.set_next_level_protocol(protocol);
    ip.set_source(source);
    ip.set_destination(destination);
    ip.payload_mut().copy_from_slice(transport);
    let checksum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(checksum);
    bytes
}

/// An IPv4 frame carrying IP protocol number `protocol` (a tunnel: 4, 41, 47).
pub fn ip_protocol_between(
    from: [u8; 6],
    to: [u8; 6],
    source: Ipv4Addr,
    destination: Ipv4Addr,
    protocol: u8,
    transport: &[u8],
) -> Vec<u8> {
    frame_between(from, to, source, destination, IpNextHeaderProtocol(protocol), transport)
}

/// A UDP datagram from port 40000 to `port` carrying `payload`.
pub fn udp(from: [u8; 6], to: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    udp_between(from, to, SOURCE, DESTINATION, port, payload)
}

/// A UDP datagram from `source`:40000 to `destination`:`port` carrying `payload`.
pub fn udp_between(
    from: [u8; 6],
    to: [u8; 6],
    source: Ipv4Addr,
    destination: Ipv4Addr,
    port: u16,
    payload: &[u8],
) -> Vec<u8> {
    udp_ports(from, to, (source, 40000), (destination, port), payload)
}

/// A UDP datagram between any two endpoints (address, port), e.g. a server's response.
pub fn udp_ports(
    from: [u8; 6],
    to: [u8; 6],
    (source, source_port): (Ipv4Addr, u16),
    (destination, port): (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut transport = vec![0u8; 8 + payload.len()];
    let mut udp = MutableUdpPacket::new(&mut transport).unwrap();
    udp.set_source(source_port);
    udp.set_destination(port);
    udp.set_length((8 + payload.len()) as u16);
    udp.set_payload(payload);
    frame_between(from, to, source, destination, IpNextHeaderProtocols::Udp, &transport)
}

/// A TCP SYN from port 40001 to `port` with sequence number `seq`.
pub fn tcp_syn(from: [u8; 6], to: [u8; 6], port: u16, seq: u32) -> Vec<u8> {
    let mut transport = vec![0u8; 20];
    let mut tcp = MutableTcpPacket::new(&mut transport).unwrap();
    tcp.set_source(40001);
    tcp.set_destination(port);
    tcp.set_sequence(seq);
    tcp.set_data_offset(5);
    tcp.set_flags(TcpFlags::SYN);
    tcp.set_window(64240);
    frame(from, to, IpNextHeaderProtocols::Tcp, &transport)
}

/// A TCP segment from port 40001 to `port` with `flags` (e.g. 0x18 PSH|ACK) carrying `payload`.
pub fn tcp(from: [u8; 6], to: [u8; 6], port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    tcp_ports(from, to, (SOURCE, 40001), (DESTINATION, port), flags, payload)
}

/// A TCP segment between any two endpoints (address, port), sequence number 1, ack 1 when ACK is set.
pub fn tcp_ports(
    from: [u8; 6],
    to: [u8; 6],
    source: (Ipv4Addr, u16),
    destination: (Ipv4Addr, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    tcp_segment(from, to, source, destination, flags, 1, payload)
}

/// A TCP segment with sequence number `seq` (ack 1 when ACK is set).
pub fn tcp_segment(
    from: [u8; 6],
    to: [u8; 6],
    (source, source_port): (Ipv4Addr, u16),
    (destination, port): (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut transport = vec![0u8; 20 + payload.len()];
    let mut tcp = MutableTcpPacket::new(&mut transport).unwrap();
    tcp.set_source(source_port);
    tcp.set_destination(port);
    tcp.set_sequence(seq);
    if flags & TcpFlags::ACK != 0 {
        tcp.set_acknowledgement(1);
    }
    tcp.set_data_offset(5);
    tcp.set_flags(flags);
    tcp.set_window(64240);
    tcp.set_payload(payload);
    frame_between(from, to, source, destination, IpNextHeaderProtocols::Tcp, &transport)
}

/// A DNS query (type A) for `name`, as a UDP payload.
pub fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    message
}

/// The response to [`dns_query`]`(id, name)`: one A record, or none with `rcode` 3 (NXDOMAIN).
pub fn dns_response(id: u16, name: &str, address: Option<[u8; 4]>) -> Vec<u8> {
    let mut message = dns_query(id, name);
    message[2] = 0x81; // response, recursion desired
    message[3] = if address.is_some() { 0x80 } else { 0x83 };
    if let Some(address) = address {
        message[7] = 1; // one answer
        message.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        message.extend_from_slice(&address);
    }
    message
}

/// An HTTP/1.1 response status line and headers.
pub fn http_response(status: u16) -> Vec<u8> {
    format!("HTTP/1.1 {status} OK\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// An HTTP/1.1 GET request for `host`.
pub fn http_get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: trawl-test\r\nAccept: */*\r\n\r\n").into_bytes()
}

/// An HTTP/2 frame (RFC 9113 4.1).
pub fn http2_frame(frame_type: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    bytes.extend([frame_type, flags]);
    bytes.extend(stream.to_be_bytes());
    bytes.extend(payload);
    bytes
}

/// An HPACK header block of literals without indexing and without Huffman coding: what any
/// decoder reads with no table at all. Names and values under 127 bytes.
pub fn hpack_literals(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0);
        for text in [name, value] {
            block.push(text.len() as u8);
            block.extend(text.as_bytes());
        }
    }
    block
}

/// The two sides of a unary gRPC call on stream 1: the client's preface, SETTINGS, request headers
/// and one message; the server's SETTINGS, response headers, one message and trailers with
/// `grpc_status`.
pub fn grpc_call(path: &str, grpc_status: u32) -> (Vec<u8>, Vec<u8>) {
    const HEADERS: u8 = 1;
    const END_STREAM: u8 = 0x1;
    const END_HEADERS: u8 = 0x4;
    let message = |text: &[u8]| [&[0][..], &(text.len() as u32).to_be_bytes(), text].concat();
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend(http2_frame(4, 0, 0, &[]));
    let request = hpack_literals(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "greeter.test:50051"),
        ("content-type", "application/grpc"),
    ]);
    client.extend(http2_frame(HEADERS, END_HEADERS, 1, &request));
    client.extend(http2_frame(0, END_STREAM, 1, &message(b"world")));
    let mut server = http2_frame(4, 0, 0, &[]);
    let response = hpack_literals(&[(":status", "200"), ("content-type", "application/grpc")]);
    server.extend(http2_frame(HEADERS, END_HEADERS, 1, &response));
    server.extend(http2_frame(0, 0, 1, &message(b"hello world")));
    let status = grpc_status.to_string();
    let trailers = hpack_literals(&[("grpc-status", &status), ("grpc-message", "card%20declined")]);
    server.extend(http2_frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    (client, server)
}

/// A TLS 1.3 ClientHello with server name `sni` and ALPN `h2`, as a TCP payload.
pub fn tls_client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut extensions = vec![0, 0];
    extensions.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
    extensions.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    extensions.push(0);
    extensions.extend_from_slice(&(name.len() as u16).to_be_bytes());
    extensions.extend_from_slice(name);
    extensions.extend_from_slice(&[0, 16, 0, 5, 0, 3, 2, b'h', b'2']);
    extensions.extend_from_slice(&[0, 43, 0, 3, 2, 3, 4]);
    let mut hello = vec![3, 3];
    hello.extend_from_slice(&[7; 32]);
    hello.push(0);
    hello.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
    hello.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    hello.extend_from_slice(&extensions);
    let mut handshake = vec![1, 0];
    handshake.extend_from_slice(&(hello.len() as u16).to_be_bytes());
    handshake.extend_from_slice(&hello);
    let mut record = vec![22, 3, 1];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// [`tls_client_hello`] with a padding extension of `padding` bytes before the server name, like
/// a browser's hello with a post-quantum key share (~1.8 KB): big enough to span TCP segments.
pub fn tls_client_hello_padded(sni: &str, padding: usize) -> Vec<u8> {
    let small = tls_client_hello(sni);
    // Record (5), handshake header (4), version (2), random (32), session id (1), ciphers (4),
    // compression (2); then the extensions' length and the extensions.
    let mut hello = small[..5 + 4 + 2 + 32 + 1 + 4 + 2].to_vec();
    let extensions = &small[hello.len() + 2..];
    let mut padded = vec![0, 21];
    padded.extend_from_slice(&(padding as u16).to_be_bytes());
    padded.extend(std::iter::repeat_n(0, padding));
    padded.extend_from_slice(extensions);
    hello.extend_from_slice(&(padded.len() as u16).to_be_bytes());
    hello.extend_from_slice(&padded);
    let handshake_len = hello.len() - 9;
    hello[6..9].copy_from_slice(&(handshake_len as u32).to_be_bytes()[1..]);
    let record_len = hello.len() - 5;
    hello[3..5].copy_from_slice(&(record_len as u16).to_be_bytes());
    hello
}

/// `frame` (an Ethernet frame) with VLAN tags inserted after its MAC addresses: (TPID, TCI)
/// pairs, outermost first, e.g. `[(0x88a8, 200), (0x8100, 300)]` for QinQ.
pub fn with_vlan_tags(frame: &[u8], tags: &[(u16, u16)]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for (tpid, tci) in tags {
        out.extend_from_slice(&tpid.to_be_bytes());
        out.extend_from_slice(&tci.to_be_bytes());
    }
    out.extend_from_slice(&frame[12..]);
    out
}
