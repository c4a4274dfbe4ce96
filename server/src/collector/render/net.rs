//! Addresses: which networks count as local (scope-render.md §3), and the report's DNS names.

use std::net::IpAddr;

use super::super::report::Report;

/// A CIDR block, IPv4 or IPv6, as a 128-bit prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    v4: bool,
    base: u128,
    bits: u8,
}

fn to_u128(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (true, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (false, u128::from(v6)),
    }
}

fn mask(v4: bool, bits: u8) -> u128 {
    let width = if v4 { 32 } else { 128 };
    let bits = u32::from(bits.min(width));
    if bits == 0 {
        return 0;
    }
    let full: u128 = if v4 { u128::from(u32::MAX) } else { u128::MAX };
    full & !full.checked_shr(bits).unwrap_or(0)
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (addr, bits) = s.split_once('/')?;
        let ip: IpAddr = addr.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let (v4, value) = to_u128(ip);
        if bits > if v4 { 32 } else { 128 } {
            return None;
        }
        Some(Cidr {
            v4,
            base: value & mask(v4, bits),
            bits,
        })
    }

    #[cfg(test)]
    fn contains(&self, ip: IpAddr) -> bool {
        let (v4, value) = to_u128(ip);
        v4 == self.v4 && value & mask(v4, self.bits) == self.base
    }
}

/// The networks a report's hosts call local: the bases of their blocks, grouped by family and
/// prefix length, so an address is checked against at most one set per distinct prefix length
/// (scanning every block for every endpoint cost hosts × endpoints).
#[derive(Debug, Default)]
pub struct Networks(Vec<((bool, u8), std::collections::HashSet<u128>)>);

impl Networks {
    fn of(blocks: Vec<Cidr>) -> Networks {
        let mut groups: std::collections::BTreeMap<(bool, u8), std::collections::HashSet<u128>> =
            std::collections::BTreeMap::new();
        for block in blocks {
            groups
                .entry((block.v4, block.bits))
                .or_default()
                .insert(block.base);
        }
        Networks(groups.into_iter().collect())
    }
}

impl Networks {
    /// Host and Overlay `local_networks`, plus the smallest IPv4 network holding every Service's
    /// `kubernetes_ip`.
    pub fn of_report(report: &Report) -> Networks {
        let mut nets = Vec::new();
        for topology in ["Host", "Overlay"] {
            for node in report
                .topology(topology)
                .into_iter()
                .flat_map(|t| t.nodes.values())
            {
                for cidr in node.sets.get("local_networks").into_iter().flatten() {
                    nets.extend(Cidr::parse(cidr));
                }
            }
        }
        let service_ips: Vec<u32> = report
            .topology("Service")
            .into_iter()
            .flat_map(|t| t.nodes.values())
            .filter_map(|n| n.latest.get("kubernetes_ip"))
            .filter_map(|l| l.value.parse::<std::net::Ipv4Addr>().ok())
            .map(u32::from)
            .collect();
        if let (Some(lo), Some(hi)) = (service_ips.iter().min(), service_ips.iter().max()) {
            let bits = (lo ^ hi).leading_zeros() as u8;
            nets.push(Cidr {
                v4: true,
                base: u128::from(*lo) & mask(true, bits),
                bits,
            });
        }
        Networks::of(nets)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v4, value) = to_u128(ip);
        self.0.iter().any(|((family, bits), bases)| {
            *family == v4 && bases.contains(&(value & mask(v4, *bits)))
        })
    }
}

/// Parses an address as Go's `net.ParseIP` would for an endpoint: IPv6 only when it has a colon.
pub fn parse_ip(addr: &str) -> Option<IpAddr> {
    addr.parse().ok()
}

/// The report's DNS names for `addr`: forward names, then reverse ones, each sorted.
pub fn dns_names(report: &Report, addr: &str) -> Vec<String> {
    let Some(record) = report.dns.get(addr) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for key in ["forward", "reverse"] {
        let mut names: Vec<String> = record
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        out.extend(names);
    }
    out
}

/// The first of the report's DNS names for `addr` that is a known service, in the order
/// [`dns_names`] gives them (the smallest forward one, else the smallest reverse one), found in
/// one pass without copying the names.
pub fn first_known_service(report: &Report, addr: &str) -> Option<String> {
    let record = report.dns.get(addr)?;
    ["forward", "reverse"].into_iter().find_map(|key| {
        record
            .get(key)?
            .as_array()?
            .iter()
            .filter_map(|s| s.as_str())
            .filter(|name| is_known_service(name))
            .min()
            .map(str::to_owned)
    })
}

/// Scope's known cloud services (`render/theinternet.go`): connections to them get their own
/// pseudo node instead of "the internet".
pub fn is_known_service(name: &str) -> bool {
    const SUFFIXES: [&str; 10] = [
        ".amazonaws.com",
        ".googleapis.com",
        ".weave.works",
        ".core.windows.net",
        ".servicebus.windows.net",
        ".azure-api.net",
        ".onmicrosoft.com",
        ".cloudapp.azure.com",
        ".database.windows.net",
        ".documents.azure.com",
    ];
    let excluded = name.starts_with("ec2") && name.ends_with(".amazonaws.com");
    !excluded
        && SUFFIXES
            .iter()
            .any(|s| name.len() > s.len() && name.ends_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_contain_their_addresses() {
        let n = Cidr::parse("192.0.2.2/24").unwrap();
        assert!(n.contains("192.0.2.200".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let lo = Cidr::parse("127.0.0.1/8").unwrap();
        assert!(lo.contains("127.9.9.9".parse().unwrap()));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn known_services() {
        assert!(is_known_service("s3.eu-west-1.amazonaws.com"));
        assert!(!is_known_service("ec2-1-2-3-4.compute.amazonaws.com"));
        assert!(is_known_service("storage.googleapis.com"));
        assert!(!is_known_service("example.com"));
        assert!(!is_known_service("googleapis.com"));
    }
}
