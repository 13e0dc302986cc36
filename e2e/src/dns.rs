//! A DNS server on loopback that answers every `A` question with the same
//! addresses: a service name that resolves to several instances, as a
//! Kubernetes headless Service or a scaled compose service does. Envoy is
//! pointed at it with the render option `dns_resolver`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Result;

/// A running DNS server. Stops when dropped.
#[derive(Debug)]
pub struct Dns {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Dns {
    /// Answers every `A` question with `addresses` (TTL 1 s); other
    /// questions get an empty answer.
    pub async fn start(addresses: Vec<Ipv4Addr>) -> Result<Self> {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(answer) = answer(&buf[..n], &addresses) {
                    let _ = socket.send_to(&answer, from).await;
                }
            }
        });
        Ok(Self { addr, task })
    }

    /// `ip:port`, as the render option `dns_resolver` takes it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The answer to one query: its question back, and for `A` one record per
/// address. `None` for what is not a query with one question.
fn answer(query: &[u8], addresses: &[Ipv4Addr]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let is_a = question[question.len() - 4..question.len() - 2] == [0, 1];
    let records = if is_a { addresses } else { &[] };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&query[0..2]);
    out.extend_from_slice(&[0x81, 0x80, 0, 1]);
    out.extend_from_slice(&u16::try_from(records.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for ip in records {
        // Name: a pointer to the question's; type A, class IN, TTL 1 s.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_a_question_gets_every_address() {
        // id 0x1234, RD, one question: pool.test A IN.
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x04pool\x04test\x00\x00\x01\x00\x01");
        let ips = [Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)];
        let a = answer(&q, &ips).unwrap();
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(&a[6..8], &[0, 2], "two answers");
        assert!(a.ends_with(&[0, 4, 127, 0, 0, 3]));
        // AAAA: no answer.
        let aaaa = [&q[..q.len() - 4], &[0, 28, 0, 1]].concat();
        assert_eq!(&answer(&aaaa, &ips).unwrap()[6..8], &[0, 0]);
        // Not a query, or cut short: nothing.
        assert!(answer(&a, &ips).is_none());
        assert!(answer(&q[..14], &ips).is_none());
    }
}
