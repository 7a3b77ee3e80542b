//! A private VM network for the cluster chain: an Ethernet hub on 127.0.0.1 that QEMU's
//! `-netdev socket,connect=` links (4-byte big-endian length, then the frame) plug into. Every
//! frame from one VM goes to every other VM, so the guests share one segment while nothing
//! leaves loopback. Threads end when QEMU closes its side; the listener with the hub.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::TaskResult;

/// Largest frame accepted (a jumbo frame is 9018 bytes; QEMU sends at most 64 KiB with GSO off).
const MAX_FRAME: usize = 65_536;

pub struct Hub {
    pub port: u16,
    ports: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Hub {
    pub fn start() -> TaskResult<Hub> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("hub: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let ports: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (accepted, stopping) = (Arc::clone(&ports), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_nodelay(true);
                        let Ok(reader) = stream.try_clone() else { continue };
                        let index = {
                            let mut all = accepted.lock().unwrap_or_else(|p| p.into_inner());
                            all.push(stream);
                            all.len() - 1
                        };
                        let all = Arc::clone(&accepted);
                        std::thread::spawn(move || forward(reader, index, all));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Hub { port, ports, stop })
    }

    /// The QEMU arguments of a VM's second NIC (`eth1`, the board's `b`) on this hub.
    pub fn nic_args(&self, id: u8) -> Vec<String> {
        vec![
            "-netdev".into(),
            format!("socket,id=hub0,connect=127.0.0.1:{}", self.port),
            "-device".into(),
            format!("virtio-net-pci,netdev=hub0,romfile=,mac=52:54:00:77:00:{id:02x}"),
        ]
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for port in self.ports.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = port.shutdown(Shutdown::Both);
        }
    }
}

fn forward(mut reader: TcpStream, from: usize, all: Arc<Mutex<Vec<TcpStream>>>) {
    let mut frame = vec![0u8; MAX_FRAME];
    loop {
        let mut length = [0u8; 4];
        if reader.read_exact(&mut length).is_err() {
            return;
        }
        let len = u32::from_be_bytes(length) as usize;
        if len > MAX_FRAME || reader.read_exact(&mut frame[..len]).is_err() {
            return;
        }
        let mut ports = all.lock().unwrap_or_else(|p| p.into_inner());
        for (index, port) in ports.iter_mut().enumerate() {
            if index != from {
                // A VM that is gone just misses frames, as on a real hub.
                let _ = port.write_all(&length).and_then(|()| port.write_all(&frame[..len]));
            }
        }
    }
}
