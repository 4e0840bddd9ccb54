//! DNS messages (RFC 1035 section 4) as the embedded resolver reads and writes them: a parser of
//! whole messages (header, questions, resource records, name compression) for what containers
//! send, and builders of the answers it gives itself. Outside input: fuzzed by `engine_dns`.

use std::net::Ipv4Addr;

/// RFC 1035 4.1.1 RCODEs the resolver answers with.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query could not be interpreted.
    pub const FORMERR: u8 = 1;
    /// The server failed.
    pub const SERVFAIL: u8 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// The kind of query is not implemented.
    pub const NOTIMP: u8 = 4;
}

/// Record types the resolver answers itself.
pub mod rtype {
    /// An IPv4 address.
    pub const A: u16 = 1;
    /// A domain name pointer (reverse lookups).
    pub const PTR: u16 = 12;
    /// An IPv6 address.
    pub const AAAA: u16 = 28;
}

/// Why bytes are not a DNS message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// the message ends inside its {0}
    #[error("the message ends inside its {0}")]
    Truncated(&'static str),
    /// a label longer than 63 bytes, or a name longer than 255
    #[error("a label longer than 63 bytes or a name longer than 255")]
    NameTooLong,
    /// a compression pointer that does not point backwards
    #[error("a compression pointer at {at} to {to} does not point backwards")]
    BadPointer {
        /// Where the pointer is.
        at: usize,
        /// Where it points.
        to: usize,
    },
    /// a label type other than a plain label or a pointer (RFC 6891 extended labels)
    #[error("label type {0:#04x} is not supported")]
    LabelType(u8),
}

/// The fixed 12-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The query id.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, RCODE.
    pub flags: u16,
    /// Number of questions.
    pub qdcount: u16,
    /// Number of answers.
    pub ancount: u16,
    /// Number of authority records.
    pub nscount: u16,
    /// Number of additional records.
    pub arcount: u16,
}

impl Header {
    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode (0: standard query).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The response code.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }
}

/// A question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name, lowercase, dot-separated, without the root's trailing dot.
    pub name: String,
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name (as in [`Question::name`]).
    pub name: String,
    /// TYPE.
    pub rtype: u16,
    /// CLASS.
    pub class: u16,
    /// TTL in seconds.
    pub ttl: u32,
    /// The RDATA as sent.
    pub data: Vec<u8>,
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The header.
    pub header: Header,
    /// The questions.
    pub questions: Vec<Question>,
    /// Answers, authority and additional records, in order.
    pub records: Vec<Record>,
    /// Where the question section ends (an answer copies the bytes before it).
    pub question_end: usize,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Truncated(what))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(DnsError::Truncated(what))?;
        self.pos = end;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A name at the current position, following compression pointers (each must point before
    /// the one that led there, so there are no loops).
    fn name(&mut self) -> Result<String, DnsError> {
        let mut labels: Vec<String> = Vec::new();
        let mut len = 0usize;
        let mut at = self.pos;
        let mut limit = at;
        let mut jumped = false;
        loop {
            let b = *self.buf.get(at).ok_or(DnsError::Truncated("name"))?;
            match b & 0xc0 {
                0x00 => {
                    at += 1;
                    if b == 0 {
                        break;
                    }
                    let n = usize::from(b);
                    let label = self
                        .buf
                        .get(at..at + n)
                        .ok_or(DnsError::Truncated("name"))?;
                    len += n + 1;
                    if len > 255 {
                        return Err(DnsError::NameTooLong);
                    }
                    labels.push(
                        label
                            .iter()
                            .map(|c| char::from(c.to_ascii_lowercase()))
                            .collect(),
                    );
                    at += n;
                }
                0xc0 => {
                    let lo = *self.buf.get(at + 1).ok_or(DnsError::Truncated("name"))?;
                    let to = usize::from(u16::from_be_bytes([b & 0x3f, lo]));
                    // Into the header is as wrong as forwards: names start at offset 12.
                    if to >= limit || to < 12 {
                        return Err(DnsError::BadPointer { at, to });
                    }
                    if !jumped {
                        self.pos = at + 2;
                        jumped = true;
                    }
                    limit = to;
                    at = to;
                }
                _ => return Err(DnsError::LabelType(b)),
            }
        }
        if !jumped {
            self.pos = at;
        }
        Ok(labels.join("."))
    }
}

impl Message {
    /// Parses a whole message.
    ///
    /// # Errors
    /// [`DnsError`] for anything that is not a well-formed message; trailing bytes after the
    /// counted records are allowed (as most servers allow them).
    pub fn parse(buf: &[u8]) -> Result<Message, DnsError> {
        let mut r = Reader { buf, pos: 0 };
        let header = Header {
            id: r.u16("header")?,
            flags: r.u16("header")?,
            qdcount: r.u16("header")?,
            ancount: r.u16("header")?,
            nscount: r.u16("header")?,
            arcount: r.u16("header")?,
        };
        let mut questions = Vec::new();
        for _ in 0..header.qdcount {
            let name = r.name()?;
            questions.push(Question {
                name,
                qtype: r.u16("question")?,
                qclass: r.u16("question")?,
            });
        }
        let question_end = r.pos;
        let mut records = Vec::new();
        let total =
            usize::from(header.ancount) + usize::from(header.nscount) + usize::from(header.arcount);
        for _ in 0..total {
            let name = r.name()?;
            let rtype = r.u16("record")?;
            let class = r.u16("record")?;
            let ttl = r.u32("record")?;
            let n = r.u16("record")?;
            let data = r.take(usize::from(n), "record data")?.to_vec();
            records.push(Record {
                name,
                rtype,
                class,
                ttl,
                data,
            });
        }
        Ok(Message {
            header,
            questions,
            records,
            question_end,
        })
    }
}

/// A response to `query` (whose parse is `msg`) with `rcode` and no records: the header with
/// QR and RA set, RD kept, and the question section copied.
pub fn reply(query: &[u8], msg: &Message, rcode: u8) -> Vec<u8> {
    let questions = query.get(12..msg.question_end).unwrap_or_default();
    let mut out = Vec::with_capacity(12 + questions.len());
    out.extend_from_slice(&msg.header.id.to_be_bytes());
    let flags = 0x8000 | (msg.header.flags & 0x7900) | 0x0080 | u16::from(rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&msg.header.qdcount.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(questions);
    out
}

/// A response to a single-question `query` answering A records `ips` with `ttl`, each owned by
/// the question's name (a compression pointer to offset 12).
pub fn answer_a(query: &[u8], msg: &Message, ips: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let mut out = reply(query, msg, rcode::NOERROR);
    let count = u16::try_from(ips.len()).unwrap_or(u16::MAX);
    out[6..8].copy_from_slice(&count.to_be_bytes());
    for ip in ips.iter().take(usize::from(count)) {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&rtype::A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

/// A response to a single-question PTR `query` naming `target` (uncompressed) with `ttl`.
pub fn answer_ptr(query: &[u8], msg: &Message, target: &str, ttl: u32) -> Vec<u8> {
    let mut out = reply(query, msg, rcode::NOERROR);
    let mut name = Vec::new();
    for label in target.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        name.push(l.len() as u8);
        name.extend_from_slice(l);
    }
    name.push(0);
    out[6..8].copy_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&[0xc0, 12]);
    out.extend_from_slice(&rtype::PTR.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(&name);
    out
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`) stands for.
pub fn reverse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let parts: Vec<u8> = rest
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match parts[..] {
        [d, c, b, a] => Some(Ipv4Addr::new(a, b, c, d)),
        _ => None,
    }
}

/// A standard query for `name` and `qtype` with `id` (for tests and the health check).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x0100u16.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out
}

/// The check of the `engine_dns` fuzz target and its corpus replay: parses `data` and, when it
/// is a message with one question, builds the answers the resolver would give and parses them
/// back. Returns whether `data` was accepted; panics when an invariant breaks.
pub fn check(data: &[u8]) -> bool {
    let Ok(m) = Message::parse(data) else {
        return false;
    };
    for rcode in [rcode::FORMERR, rcode::SERVFAIL] {
        let r = Message::parse(&reply(data, &m, rcode)).expect("a reply parses");
        assert_eq!((r.header.id, r.header.rcode()), (m.header.id, rcode));
        assert_eq!(r.questions, m.questions);
    }
    if let [q] = m.questions.as_slice() {
        let ips = [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)];
        let a = Message::parse(&answer_a(data, &m, &ips, 600)).expect("an answer parses");
        assert_eq!(a.records.len(), 2);
        assert!(a.records.iter().all(|r| r.name == q.name));
        let p = Message::parse(&answer_ptr(data, &m, "web.net", 600)).expect("a PTR parses");
        assert_eq!(p.records[0].name, q.name);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_round_trips_through_an_answer() {
        let q = query(0x1234, "Web.Example", rtype::A);
        let m = Message::parse(&q).unwrap();
        assert_eq!(m.questions[0].name, "web.example");
        let a = answer_a(
            &q,
            &m,
            &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
            600,
        );
        let r = Message::parse(&a).unwrap();
        assert!(r.header.is_response());
        assert_eq!(r.header.id, 0x1234);
        assert_eq!(r.header.flags & 0x0100, 0x0100, "RD is kept");
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].name, "web.example");
        assert_eq!(r.records[1].data, vec![10, 0, 0, 3]);
        assert_eq!(r.records[0].ttl, 600);
    }

    #[test]
    fn bad_messages_are_refused() {
        assert_eq!(Message::parse(&[0; 5]), Err(DnsError::Truncated("header")));
        // A pointer to itself.
        let mut q = query(1, "", rtype::A);
        q[12] = 0xc0;
        q.insert(13, 12);
        assert!(matches!(
            Message::parse(&q),
            Err(DnsError::BadPointer { .. })
        ));
        let mut long = query(1, "a", rtype::A);
        long[12] = 0x40;
        assert_eq!(Message::parse(&long), Err(DnsError::LabelType(0x40)));
    }

    #[test]
    fn ptr_and_reverse_names() {
        assert_eq!(
            reverse_ipv4("2.0.18.172.in-addr.arpa"),
            Some(Ipv4Addr::new(172, 18, 0, 2))
        );
        assert_eq!(reverse_ipv4("2.0.18.in-addr.arpa"), None);
        let q = query(7, "2.0.18.172.in-addr.arpa", rtype::PTR);
        let m = Message::parse(&q).unwrap();
        let r = Message::parse(&answer_ptr(&q, &m, "web.net", 600)).unwrap();
        assert_eq!(r.records[0].data, b"\x03web\x03net\x00".to_vec());
    }
}
