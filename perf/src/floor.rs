//! The machine's floor for the open loop: a bare HTTP/1.1 responder, a few lines on tokio
//! that answer every request with a fixed 200 and do nothing else. k6 at the same arrival
//! rate against it, on the same cores, measures what the generator, the loopback network and
//! the scheduler cost by themselves at that rate, and the open-loop report puts it beside
//! reco's figures.

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";

/// A running responder: its base URL, and the task that stops with it.
#[derive(Debug)]
pub struct Floor {
    pub base: String,
    task: JoinHandle<()>,
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Floor {
    /// Binds a free loopback port and answers there until dropped.
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(answer(socket));
            }
        });
        Ok(Self { base, task })
    }
}

/// Answers each request of one connection, in order, until it closes. Requests are read to
/// their blank line (the generator sends no bodies here).
async fn answer(mut socket: TcpStream) {
    let _ = socket.set_nodelay(true);
    let mut buf = vec![0_u8; 64 * 1024];
    let mut filled = 0;
    loop {
        let Ok(n) = socket.read(&mut buf[filled..]).await else {
            return;
        };
        if n == 0 {
            return;
        }
        filled += n;
        let mut answers = 0;
        while let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.copy_within(end + 4..filled, 0);
            filled -= end + 4;
            answers += 1;
        }
        if answers > 0 && socket.write_all(&RESPONSE.repeat(answers)).await.is_err() {
            return;
        }
        if filled == buf.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pipelined requests on one connection get two answers, and the connection stays
    /// open for a third.
    #[tokio::test]
    async fn every_request_is_answered() {
        let floor = Floor::start().await.unwrap();
        let mut socket = TcpStream::connect(floor.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
        socket
            .write_all(&[&request[..], &request[..]].concat())
            .await
            .unwrap();
        let mut got = vec![0_u8; RESPONSE.len() * 2];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(got, RESPONSE.repeat(2));
        socket.write_all(request).await.unwrap();
        let mut third = vec![0_u8; RESPONSE.len()];
        socket.read_exact(&mut third).await.unwrap();
        assert_eq!(third, RESPONSE);
    }
}
