//! `ip("...")` matching, for the line filter `|= ip("10.0.0.0/8")` and the label filter
//! `addr = ip("...")`. A pattern is one address, a CIDR prefix or a range `a-b`, IPv4 or
//! IPv6 (an address only matches its own family). A line matches when any IP-looking token
//! in it does: Loki scans for a digit followed by a dot within three bytes (IPv4) or hex
//! digits followed by a colon (IPv6), takes the longest run of address characters from
//! there and parses it.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Addr {
    V4(u32),
    V6(u128),
}

fn parse_addr(s: &str) -> Option<Addr> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(|a| Addr::V6(u128::from(a)));
    }
    // Go rejects leading zeros in IPv4 fields.
    let fields: Vec<&str> = s.split('.').collect();
    if fields.len() != 4
        || fields
            .iter()
            .any(|f| f.is_empty() || f.len() > 3 || (f.len() > 1 && f.starts_with('0')))
    {
        return None;
    }
    s.parse::<Ipv4Addr>().ok().map(|a| Addr::V4(u32::from(a)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Matcher {
    Addr(Addr),
    Prefix(Addr, u32),
    Range(Addr, Addr),
}

/// A compiled `ip("...")` pattern.
#[derive(Debug, Clone)]
pub struct IpFilter {
    matcher: Matcher,
}

impl IpFilter {
    pub fn new(pattern: &str) -> Result<IpFilter, String> {
        let invalid = || format!("ip: invalid pattern: {}", crate::logql::go::quote(pattern));
        if let Some(a) = parse_addr(pattern) {
            return Ok(IpFilter {
                matcher: Matcher::Addr(a),
            });
        }
        if let Some((addr, bits)) = pattern.split_once('/') {
            let a = parse_addr(addr).ok_or_else(invalid)?;
            let max = match a {
                Addr::V4(_) => 32,
                Addr::V6(_) => 128,
            };
            let valid_bits = !bits.is_empty()
                && bits.bytes().all(|b| b.is_ascii_digit())
                && (bits == "0" || !bits.starts_with('0'));
            let n: u32 = bits
                .parse()
                .ok()
                .filter(|n| valid_bits && *n <= max)
                .ok_or_else(invalid)?;
            return Ok(IpFilter {
                matcher: Matcher::Prefix(a, n),
            });
        }
        if let Some((from, to)) = pattern.split_once('-') {
            let (f, t) = (
                parse_addr(from).ok_or_else(invalid)?,
                parse_addr(to).ok_or_else(invalid)?,
            );
            let same_family = matches!(
                (f, t),
                (Addr::V4(_), Addr::V4(_)) | (Addr::V6(_), Addr::V6(_))
            );
            if !same_family || f > t {
                return Err(invalid());
            }
            return Ok(IpFilter {
                matcher: Matcher::Range(f, t),
            });
        }
        Err(invalid())
    }

    fn contains(&self, ip: Addr) -> bool {
        match self.matcher {
            Matcher::Addr(a) => a == ip,
            Matcher::Range(f, t) => f <= ip && ip <= t,
            Matcher::Prefix(p, bits) => match (p, ip) {
                (Addr::V4(p), Addr::V4(ip)) => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u32::MAX << (32 - bits)
                    };
                    p & mask == ip & mask
                }
                (Addr::V6(p), Addr::V6(ip)) => {
                    let mask = if bits == 0 {
                        0
                    } else {
                        u128::MAX << (128 - bits)
                    };
                    p & mask == ip & mask
                }
                _ => false,
            },
        }
    }

    /// Whether any IP-looking token of `line` is matched.
    pub fn matches(&self, line: &[u8]) -> bool {
        let n = line.len();
        let mut i = 0;
        while i < n {
            let charset: Option<fn(u8) -> bool> = if i + 3 < n && ipv4_hint(&line[i..i + 4]) {
                Some(|c| c.is_ascii_digit() || c == b'.')
            } else if i + 4 < n && ipv6_hint(&line[i..i + 5]) {
                Some(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            } else {
                None
            };
            if let Some(accept) = charset {
                let len = line[i..].iter().take_while(|c| accept(**c)).count();
                let token = std::str::from_utf8(&line[i..i + len]).ok();
                if token
                    .and_then(parse_addr)
                    .is_some_and(|ip| self.contains(ip))
                {
                    return true;
                }
                i += len;
            }
            i += 1;
        }
        false
    }
}

fn ipv4_hint(p: &[u8]) -> bool {
    p[0].is_ascii_digit() && (p[1] == b'.' || p[2] == b'.' || p[3] == b'.')
}

fn ipv6_hint(p: &[u8]) -> bool {
    let h = |c: u8| c.is_ascii_hexdigit();
    (p[0] == b':' && p[1] == b':' && h(p[2]))
        || (h(p[0]) && p[1] == b':')
        || (h(p[0]) && h(p[1]) && p[2] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && p[3] == b':')
        || (h(p[0]) && h(p[1]) && h(p[2]) && h(p[3]) && p[4] == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn line(pattern: &str, line: &str, want: bool) {
        let f = IpFilter::new(pattern).unwrap();
        assert_eq!(f.matches(line.as_bytes()), want, "{pattern} on {line}");
    }

    #[test]
    fn ip_line_matching_follows_loki() {
        line("192.168.0.1", "from 192.168.0.1 ok", true);
        line("192.168.0.1", "from 192.168.0.10 ok", false);
        line("192.168.0.0/16", "x=192.168.4.5", true);
        line("192.168.0.0/16", "x=192.169.4.5", false);
        line("192.168.0.1-192.168.0.5", "192.168.0.3", true);
        line("192.168.0.1-192.168.0.5", "192.168.0.6", false);
        line("10.0.0.0/8", "a 10.1.2.3:8080 b", true);
        line("::1", "addr ::1 end", true);
        line("2001:db8::/32", "ip=2001:db8::68 end", true);
        line("2001:db8::/32", "ip=2001:db9::68 end", false);
        line("10.0.0.0/8", "no ip here", false);
        line("10.0.0.1", "010.0.0.1", false);
        line("10.0.0.0/8", "::ffff:10.0.0.1", false);
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for p in [
            "",
            "abc",
            "10.0.0.1/33",
            "10.0.0.5-10.0.0.1",
            "10.0.0.1-::1",
            "1.2.3",
        ] {
            assert!(IpFilter::new(p).is_err(), "{p}");
        }
    }
}
