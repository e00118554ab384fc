//! Label values from closed sets: what packets say is mapped onto a few known words, so no
//! sender can mint series by choosing its own method, query type or status.

/// An HTTP method as a label: the registered common ones, else `other`.
pub fn method(method: Option<&str>) -> &'static str {
    match method {
        Some("GET") => "GET",
        Some("HEAD") => "HEAD",
        Some("POST") => "POST",
        Some("PUT") => "PUT",
        Some("DELETE") => "DELETE",
        Some("PATCH") => "PATCH",
        Some("OPTIONS") => "OPTIONS",
        Some("CONNECT") => "CONNECT",
        Some("TRACE") => "TRACE",
        Some(_) => "other",
        None => "unknown",
    }
}

/// An HTTP status as its class: `1xx` to `5xx`, else `other`.
pub fn status(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// A gRPC call's `grpc-status` as an HTTP status class, as gRPC's own HTTP mapping and the
/// service map have it: OK is `2xx`; the server's failures (UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS) `5xx`; what the caller asked wrongly or was
/// refused (the rest) `4xx`; a code gRPC does not define `other`.
pub fn grpc_status(code: u32) -> &'static str {
    match code {
        0 => "2xx",
        2 | 4 | 12 | 13 | 14 | 15 => "5xx",
        1 | 3 | 5..=11 | 16 => "4xx",
        _ => "other",
    }
}

/// A DNS query type as a label: the types services ask for, else `other`.
pub fn query_type(kind: Option<&str>) -> &'static str {
    const KNOWN: [&str; 12] = [
        "A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "HTTPS", "SVCB", "ANY",
    ];
    match kind {
        Some(kind) => KNOWN.iter().find(|known| **known == kind).copied().unwrap_or("other"),
        None => "unknown",
    }
}

/// A DNS response code as a label (dig's names), else `other`.
pub fn response_code(rcode: &str) -> &'static str {
    const KNOWN: [&str; 6] = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];
    KNOWN.iter().find(|known| **known == rcode).copied().unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_what_a_sender_chooses_onto_known_words() {
        assert_eq!(method(Some("GET")), "GET");
        assert_eq!(method(Some("BREW")), "other");
        assert_eq!(method(None), "unknown");
        assert_eq!(status(404), "4xx");
        assert_eq!(status(999), "other");
        assert_eq!(query_type(Some("AAAA")), "AAAA");
        assert_eq!(query_type(Some("TYPE65280")), "other");
        assert_eq!(response_code("NXDOMAIN"), "NXDOMAIN");
        assert_eq!(response_code("BADCOOKIE"), "other");
    }
}
